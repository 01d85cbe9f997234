"""The fixed recipe of ``Phase.run``: setup, measure before, work, measure after, save, in that order."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest

from agent_forge.pipeline.phase import EvalRecord, Phase, PhaseResult, PhaseRun


@dataclass(kw_only=True)
class StepsRun(PhaseRun):
    steps: list[str] = field(default_factory=list)


class StepsPhase(Phase):
    """Writes down each step it is called for; ``fail_in`` makes that step raise."""

    name = "cognate"

    def __init__(self, fail_in: str = "") -> None:
        self.fail_in, self.closed = fail_in, False

    def _step(self, run: StepsRun, name: str) -> None:
        run.steps.append(name)
        if name == self.fail_in:
            raise RuntimeError(name)

    @contextmanager
    def _resource(self):
        try:
            yield
        finally:
            self.closed = True

    def setup(self, ctx, inputs) -> StepsRun:
        run = StepsRun(inputs=inputs, started=0.0)
        run.closing.enter_context(self._resource())
        self._step(run, "setup")
        return run

    def measure_before(self, ctx, run: StepsRun) -> EvalRecord:
        self._step(run, "measure_before")
        return EvalRecord(loss=2.0)

    def work(self, ctx, run: StepsRun) -> None:
        assert run.before is not None and run.before.loss == 2.0 and run.after is None
        self._step(run, "work")

    def measure_after(self, ctx, run: StepsRun) -> EvalRecord:
        self._step(run, "measure_after")
        return EvalRecord(loss=1.0)

    def save(self, ctx, run: StepsRun) -> PhaseResult:
        self._step(run, "save")
        return PhaseResult(True, self.name, [], {"steps": run.steps, "seconds": run.seconds},
                           before=run.before, after=run.after)


def test_run_calls_the_steps_in_order_and_keeps_both_records() -> None:
    phase = StepsPhase()
    result = phase.run(None, [])
    assert result.metrics["steps"] == ["setup", "measure_before", "work", "measure_after", "save"]
    assert result.before.loss == 2.0 and result.after.loss == 1.0
    assert result.metrics["seconds"] >= 0.0 and phase.closed


def test_what_a_step_opened_is_closed_when_a_later_step_fails() -> None:
    phase = StepsPhase(fail_in="work")
    with pytest.raises(RuntimeError, match="work"):
        phase.run(None, [])
    assert phase.closed


def test_a_phase_with_neither_run_nor_steps_says_so() -> None:
    class Empty(Phase):
        name = "cognate"

    with pytest.raises(NotImplementedError, match="Empty"):
        Empty().run(None, [])
