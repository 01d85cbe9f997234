"""Run one real phase in a throw-away workspace: a PhaseContext like the orchestrator builds, and input models.

Phase integration tests use it to start a phase from a model registered the way the previous phase would
have registered it, without running the whole pipeline first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agent_forge.config import load_config
from agent_forge.config.schema import PipelineConfig
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import model_writer
from agent_forge.phases.common import forge_config, session_data
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.orchestrator import Orchestrator
from agent_forge.pipeline.phase import ModelRef
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from agent_forge.tracking.logging import get_logger
from agent_forge.tracking.progress import ProgressReporter
from agent_forge.tracking.sinks import MetricsTracker, SQLiteSink

SESSION = "harness-session"


def harness_config(preset: str = "smoke", overrides: Sequence[str] = ()) -> PipelineConfig:
    return load_config(preset, overrides=list(overrides))


def make_context(root: Path, phase_name: str, config: PipelineConfig | None = None) -> PhaseContext:
    """A PhaseContext for ``phase_name`` in a workspace under ``root`` (the session is created once)."""
    config = config or harness_config()
    workspace = Workspace(root)
    registry = ModelRegistry(workspace.registry_path)
    if not any(s["session_id"] == SESSION for s in registry.list_sessions()):
        Orchestrator(workspace, registry, quiet=True, phases={}).create_session(config, session_id=SESSION)
    tracker = MetricsTracker([SQLiteSink(registry, SESSION)])
    return PhaseContext(SESSION, phase_name, config, workspace, registry, tracker,
                        ProgressReporter(quiet=True), get_logger("test").bind(phase=phase_name))


def register_model(ctx: PhaseContext, model: ForgeForCausalLM, name: str,
                   metadata: dict[str, Any] | None = None) -> ModelRef:
    """Store ``model`` as an output of ``ctx``'s phase, exactly as a phase recipe does."""
    data = session_data(ctx)
    params = sum(p.numel() for p in model.parameters())
    return ctx.save_model(name, model_writer(model, data.tokenizer), metadata or {}, parameters=params)


def seed_model(root: Path, phase_name: str, name: str = "seed", config: PipelineConfig | None = None,
               metadata: dict[str, Any] | None = None, seed: int = 0) -> ModelRef:
    """A freshly initialised model of the preset registered under ``phase_name`` (the previous phase)."""
    ctx = make_context(root, phase_name, config)
    torch.manual_seed(seed)
    model = ForgeForCausalLM(forge_config(ctx.config))
    return register_model(ctx, model, name, metadata)
