"""The Phase interface (spec 3.2.1) and what a phase returns.

A phase receives a ``PhaseContext`` (session, config, storage, tracking, progress) and the models the previous
phase handed over, and returns a ``PhaseResult``: the registered output models, the metrics, and the D6 record
of the held-out evaluation before and after the phase.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from agent_forge.storage.artifacts import ModelRef

if TYPE_CHECKING:
    from agent_forge.pipeline.context import PhaseContext


@dataclass
class EvalRecord:
    """The D6 trajectory point: the same held-out measurements after every phase."""

    perplexity: float | None = None
    loss: float | None = None
    bits_per_byte: float | None = None
    accuracy: float | None = None
    size_mb: float | None = None
    latency_ms: float | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PhaseResult:
    """Standard result of every phase (spec 3.2.1), plus the before/after record of D6."""

    success: bool
    phase_name: str
    models: list[ModelRef]
    metrics: dict[str, Any]
    artifacts: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float = 0.0
    before: EvalRecord | None = None
    after: EvalRecord | None = None
    error: str | None = None

    @property
    def model_ids(self) -> list[str]:
        return [m.model_id for m in self.models]


class Phase(ABC):
    """One step of the pipeline. Subclasses set ``name`` and implement ``validate_input`` and ``run``."""

    name: ClassVar[str]
    expected_inputs: ClassVar[int | None] = 1

    def validate_input(self, ctx: PhaseContext, inputs: list[ModelRef]) -> tuple[bool, str]:
        """Check the models handed over; the default checks their number."""
        if self.expected_inputs is not None and len(inputs) != self.expected_inputs:
            return False, f"{self.name} expects {self.expected_inputs} input model(s), got {len(inputs)}"
        return True, "ok"

    @abstractmethod
    def run(self, ctx: PhaseContext, inputs: list[ModelRef]) -> PhaseResult:
        """Execute the phase; resumable from ``ctx``'s checkpoints after a crash."""
