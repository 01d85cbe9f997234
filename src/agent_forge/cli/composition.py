"""The composition root: the one module of the faces that knows the phase recipes.

The CLI (``agent-forge``, ``python -m agent_forge``, ``torchrun -m agent_forge``) builds its orchestrator
here, handing it the eight phases by name; the pipeline itself never imports ``agent_forge.phases``.
"""

from __future__ import annotations

from agent_forge.phases import PHASES
from agent_forge.pipeline.orchestrator import Orchestrator
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace


def build_orchestrator(workspace: Workspace, registry: ModelRegistry, quiet: bool = False) -> Orchestrator:
    return Orchestrator(workspace, registry, quiet=quiet, phases=PHASES)
