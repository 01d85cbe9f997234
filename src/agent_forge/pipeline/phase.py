"""The Phase interface (spec 3.2.1), its fixed recipe, and what a phase returns.

A phase receives a ``PhaseContext`` (session, config, storage, tracking, progress) and the models the previous
phase handed over, and returns a ``PhaseResult``: the registered output models, the metrics, and the D6 record
of the held-out evaluation before and after the phase.

Every phase runs the same five steps in the same order (torchtune's fixed recipe shape): ``setup`` (data,
device, input model), ``measure_before`` (the D6 record of the input), ``work`` (what the phase is for),
``measure_after`` (the D6 record of the output) and ``save`` (register the output with its metrics and
return the result). The after-record comes before the save because it is stored with the model.
"""

from __future__ import annotations

import time
from abc import ABC
from contextlib import ExitStack
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


@dataclass(kw_only=True)
class PhaseRun:
    """One run of a phase, carried from step to step; each phase subclasses it for what its steps add."""

    inputs: list[ModelRef]
    started: float = field(default_factory=time.perf_counter)  # set by ``Phase.run`` before ``setup``
    before: EvalRecord | None = None
    after: EvalRecord | None = None
    closing: ExitStack = field(default_factory=ExitStack)  # what a step opened (a progress bar), closed at the end

    @property
    def seconds(self) -> float:
        """Wall-clock seconds since ``setup`` began."""
        return time.perf_counter() - self.started


class Phase(ABC):
    """One step of the pipeline. Subclasses set ``name`` and fill in the recipe's steps (see the module)."""

    name: ClassVar[str]
    expected_inputs: ClassVar[int | None] = 1

    def validate_input(self, ctx: PhaseContext, inputs: list[ModelRef]) -> tuple[bool, str]:
        """Check the models handed over; the default checks their number."""
        if self.expected_inputs is not None and len(inputs) != self.expected_inputs:
            return False, f"{self.name} expects {self.expected_inputs} input model(s), got {len(inputs)}"
        return True, "ok"

    def run(self, ctx: PhaseContext, inputs: list[ModelRef]) -> PhaseResult:
        """Execute the phase's recipe; resumable from ``ctx``'s checkpoints after a crash."""
        started = time.perf_counter()
        run = self.setup(ctx, inputs)
        run.started = started  # the phase's duration includes its setup
        with run.closing:
            run.before = self.measure_before(ctx, run)
            self.work(ctx, run)
            run.after = self.measure_after(ctx, run)
            return self.save(ctx, run)

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> PhaseRun:
        """Check the inputs, read the session's data, place the input model on the device."""
        raise NotImplementedError(f"{type(self).__name__} implements neither run nor the recipe's steps")

    def measure_before(self, ctx: PhaseContext, run: Any) -> EvalRecord:
        """The D6 record of the model the phase starts from."""
        raise NotImplementedError

    def work(self, ctx: PhaseContext, run: Any) -> None:
        """What the phase is for; results go into ``run``."""
        raise NotImplementedError

    def measure_after(self, ctx: PhaseContext, run: Any) -> EvalRecord:
        """The D6 record of the model the phase hands on."""
        raise NotImplementedError

    def save(self, ctx: PhaseContext, run: Any) -> PhaseResult:
        """Register the output models with their metrics and return the phase's result."""
        raise NotImplementedError
