"""Pipeline: the Phase interface, hand-off validation and the orchestrator with resume."""

from agent_forge.model_io import load_ref
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.handoff import HandoffOutcome, validate_handoff
from agent_forge.pipeline.orchestrator import Orchestrator, PhaseFailedError, SessionSummary
from agent_forge.pipeline.phase import (
    EvalRecord,
    ModelRef,
    Phase,
    PhaseResult,
)

__all__ = [
    "EvalRecord",
    "HandoffOutcome",
    "ModelRef",
    "Orchestrator",
    "Phase",
    "PhaseContext",
    "PhaseFailedError",
    "PhaseResult",
    "SessionSummary",
    "load_ref",
    "validate_handoff",
]
