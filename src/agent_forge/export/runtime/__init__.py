"""Standalone runtime of an Agent Forge edge bundle: numpy only (``tokenizers`` for text in and out).

It imports nothing from torch, transformers or agent_forge, so a bundle folder that carries a copy of this
package runs anywhere numpy does: ``python -m forge_runtime . --prompt "..."`` inside the bundle. Tools
mode (``--tools``) runs calls with the bundle's copies of the package's tool modules (``tools/``, stdlib only).

Batch-1 decoding multiplies small matrices, where extra BLAS threads only spin and, on a busy machine,
make every call many times slower; so when this package is the first to load numpy it asks for one BLAS
thread unless the user set a count (``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``).
"""

import os as _os
import sys as _sys

if "numpy" not in _sys.modules:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        _os.environ.setdefault(_var, "1")

from .bundle import Bundle, TextCodec, greedy_generate, load_bundle
from .config import RuntimeConfig
from .manifest import BUNDLE_FORMAT, MANIFEST, ManifestError, describe_files, verify_manifest
from .model import Cache, ForgeRuntimeModel
from .ternary import unpack
from .tools_mode import ToolsGeneration, tools_answer, tools_generate
from .weights import Weights, WeightsError, load_weights

__all__ = [
    "BUNDLE_FORMAT", "MANIFEST", "Bundle", "Cache", "ForgeRuntimeModel", "ManifestError",
    "RuntimeConfig", "TextCodec", "ToolsGeneration", "Weights", "WeightsError", "describe_files",
    "greedy_generate", "load_bundle", "load_weights", "tools_answer", "tools_generate", "unpack", "verify_manifest",
]
