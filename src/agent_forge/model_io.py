"""Model I/O, the one home that phases, CLI, dashboard and export share: find a registered model and verify
it, load it (with its BitLinear layers) and its tokenizer, write it, and pack a ternary model so that the
packed file alone computes the same logits.

A stored model is a Hugging Face folder (``config.json`` + ``model.safetensors`` + ``tokenizer.json``)
inside an artifact folder (``storage/artifacts.py``: checksums, atomic writes). A quantized model records
its BitLinear set-up in its metadata (``bitlinear``) so that ``load_model`` rebuilds the same modules; a
packed one also carries its packed file (metadata ``packed_file``), whose header names its format.
Mid-phase training state for resume is another thing: ``storage/checkpoints.py``.

The folder also stands alone (``write_model_folder``): ``config.json`` carries the BitLinear set-up too
(``bitlinear``, so a ternary model is never rebuilt as float) and an ``auto_map`` to the model's own code,
written beside the weights (``model/remote_code.py``), so ``AutoModelForCausalLM.from_pretrained(folder,
trust_remote_code=True)`` and ``AutoTokenizer.from_pretrained(folder)`` work with only torch and transformers
installed. The tokenizer config holds the chat template and the model's context as ``model_max_length``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from torch import nn
from transformers.utils import logging as hf_logging

from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.errors import ArtifactCorruptError, NotFoundError
from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model.remote_code import AUTO_MAP, write_remote_code
from agent_forge.quant.bitlinear import BitLinearConfig, bitlinear_modules, replace_linears, ternary_layout
from agent_forge.quant.packed_io import PackedSaveConfig, read_packed_config
from agent_forge.quant.packed_model import absorb_storage_precision, packed_logits_gap
from agent_forge.storage.artifacts import ModelRef, verify_artifact
from agent_forge.storage.registry import ModelRegistry

hf_logging.disable_progress_bar()

Writer = Callable[[Path], None]


class PackedMismatchError(RuntimeError):
    """The packed file does not reproduce the model it was written from."""


def rerun_fix(session_id: str, phase_name: str) -> str:
    """The fix for a damaged or missing model: the exact commands that re-create it and finish the run."""
    return (f"re-run the phase that produced it with `agent-forge phase {phase_name} --session {session_id} "
            f"--force`, then finish with `agent-forge resume {session_id}`")


def load_ref(registry: ModelRegistry, model_id: str) -> ModelRef:
    """Look a model up in the registry and verify every file's checksum before use; the folder verified is
    the folder the returned ref points at (and so the one ``load_model`` reads)."""
    row = registry.get_model(model_id)
    path = Path(row["model_path"])
    try:
        metadata = verify_artifact(path, row.get("metadata_sha256"))
    except (ArtifactCorruptError, NotFoundError) as exc:
        raise type(exc)(exc.problem, rerun_fix(row["session_id"], row["phase_name"])) from None
    return ModelRef(model_id, path, metadata, row.get("parameters") or 0, row.get("size_mb") or 0.0)


# ---- reading ----------------------------------------------------------------------------------------------

def bitlinear_meta(model: nn.Module, config: BitLinearConfig) -> dict[str, Any]:
    """What ``load_model`` needs to rebuild the BitLinear layers of a quantized model."""
    return {"modules": sorted(bitlinear_modules(model)), "granularity": config.granularity,
            "activation_bits": config.activation_bits}


def bitlinear_config_of(ref: ModelRef) -> BitLinearConfig | None:
    """The BitLinear set-up a stored model was quantized with; None for a full-precision model."""
    quant = ref.metadata.get("bitlinear")
    if not quant:
        return None
    return BitLinearConfig(granularity=quant["granularity"], activation_bits=quant["activation_bits"])


def load_model(ref: ModelRef) -> ForgeForCausalLM:
    """Rebuild a stored model (with its BitLinear layers when it was quantized) in eval mode."""
    model = ForgeForCausalLM(ForgeConfig.from_pretrained(ref.path))
    bit_config = bitlinear_config_of(ref)
    if bit_config is not None:
        wanted = set(ref.metadata["bitlinear"]["modules"])
        replace_linears(model, keep=lambda name: name not in wanted, config=bit_config)
    state = load_file(str(ref.path / "model.safetensors"))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"lm_head.weight"}:
        raise ArtifactCorruptError(f"model {ref.model_id} does not match its config "
                                   f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})",
                                   rerun_fix(ref.metadata.get("session_id", "SESSION"),
                                             ref.metadata.get("phase", "NAME")))
    model.tie_weights()
    return model.eval()


def load_tokenizer(ref: ModelRef) -> ForgeTokenizer:
    return ForgeTokenizer.load(ref.path)


# ---- writing ----------------------------------------------------------------------------------------------

def write_model_folder(model: ForgeForCausalLM, tokenizer: ForgeTokenizer, folder: Path) -> None:
    """The Hugging Face folder of a model: safetensors, config.json with the model's BitLinear set-up and
    ``auto_map``, the model's code, and the tokenizer (chat template, ``model_max_length`` = context)."""
    model.save_pretrained(folder, safe_serialization=True)
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.update(bitlinear=ternary_layout(model), auto_map=AUTO_MAP)  # read from the modules, not trusted
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    write_remote_code(folder)
    tokenizer.save(folder, model_max_length=int(model.config.max_seq_len))


def model_writer(model: ForgeForCausalLM, tokenizer: ForgeTokenizer) -> Writer:
    """A ``write_files`` callback for ``PhaseContext.save_model``: ``write_model_folder``."""

    def write(folder: Path) -> None:
        write_model_folder(model, tokenizer, folder)

    return write


def packed_writer(model: ForgeForCausalLM, tokenizer: ForgeTokenizer, packed: Path) -> Writer:
    """Writes the HF folder of the model plus its packed file (the deployable form)."""
    base = model_writer(model, tokenizer)

    def write(folder: Path) -> None:
        base(folder)
        (folder / packed.name).write_bytes(packed.read_bytes())

    return write


# ---- packing ----------------------------------------------------------------------------------------------

def packed_file_name(ternary_format: str) -> str:
    return f"model.{ternary_format}.safetensors"


def packed_config_of(ref: ModelRef) -> PackedSaveConfig | None:
    """The format of a stored model's packed file, read from the file's header; None when it has none."""
    name = ref.metadata.get("packed_file")
    return read_packed_config(ref.path / name) if name else None


def pack_exactly(model: nn.Module, packed: Path, config: PackedSaveConfig, probe: torch.Tensor,
                 what: str) -> float:
    """Write ``model`` packed to ``packed`` with its storage precision absorbed into the model; a copy
    rebuilt from the file alone must give the same logits on ``probe`` (else PackedMismatchError).
    Returns the logit gap (0.0)."""
    absorb_storage_precision(model, packed, config)
    gap = packed_logits_gap(model, packed, probe.to(next(model.parameters()).device))
    if gap != 0.0 or not bitlinear_modules(model):
        raise PackedMismatchError(f"the {what} model does not pack exactly (logit gap {gap})")
    return gap
