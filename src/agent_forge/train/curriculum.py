"""A curriculum over difficulty levels that keeps training where the model is learning (D5).

``CurriculumScheduler`` holds the current level. After each evaluation of held-out accuracy at that
level it moves up when the accuracy reaches ``band_up``, down when it falls below ``band_down``, and
never leaves ``[min_level, max_level]``. Every ``dream_every`` steps, once there are earlier levels, a
consolidation ("dream") cycle of ``dream_steps`` batches replays them round-robin; a caller-supplied
``measure(levels)`` records their accuracy before the first and after the last replay batch, which is
how the effect of dreaming is shown. The scheduler is plain bookkeeping (no torch) with a JSON-safe
``state_dict``; ``CurriculumLoop`` carries it inside the training loop's checkpoints so a resumed run
continues at the same level with the same counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent_forge.train.loop import TrainLoop

MeasureFn = Callable[[list[int]], dict[int, float]]


@dataclass(frozen=True)
class CurriculumConfig:
    """Level range, accuracy band, evaluation interval and the dream schedule."""

    min_level: int = 1
    max_level: int = 5
    band_up: float = 0.75
    band_down: float = 0.55
    eval_interval: int = 25
    dream_every: int = 50
    dream_steps: int = 5

    def __post_init__(self) -> None:
        if not 1 <= self.min_level <= self.max_level:
            raise ValueError(f"need 1 <= min_level <= max_level, got {self.min_level}..{self.max_level}")
        if not 0.0 <= self.band_down < self.band_up <= 1.0:
            raise ValueError(f"need 0 <= band_down < band_up <= 1, got {self.band_down}, {self.band_up}")
        if self.eval_interval < 1 or self.dream_every < 1 or self.dream_steps < 0:
            raise ValueError("eval_interval and dream_every must be >= 1, dream_steps >= 0")
        if self.dream_steps >= self.dream_every:
            raise ValueError(f"dream_steps {self.dream_steps} must be below dream_every {self.dream_every}")


class CurriculumScheduler:
    """The current level, its moves, steps per level and the dream cycles with their measurements."""

    def __init__(self, config: CurriculumConfig) -> None:
        self.config = config
        self.level = config.min_level
        self.highest = config.min_level
        self.steps_per_level: dict[int, int] = {}
        self.dream_steps_per_level: dict[int, int] = {}
        self.history: list[dict[str, Any]] = []
        self.dreams: list[dict[str, Any]] = []
        self._open: dict[str, Any] | None = None

    # evaluation ---------------------------------------------------------------------------------------
    def should_evaluate(self, step: int) -> bool:
        return step > 0 and step % self.config.eval_interval == 0

    def update(self, step: int, accuracy: float) -> int:
        """Move by one level when ``accuracy`` at the current level leaves the band; returns the level."""
        before = self.level
        if accuracy >= self.config.band_up and self.level < self.config.max_level:
            self.level += 1
        elif accuracy < self.config.band_down and self.level > self.config.min_level:
            self.level -= 1
        self.highest = max(self.highest, self.level)
        self.history.append({"step": step, "level": before, "accuracy": float(accuracy),
                             "new_level": self.level})
        return self.level

    # batches and dreams -------------------------------------------------------------------------------
    def earlier_levels(self) -> list[int]:
        return list(range(self.config.min_level, self.level))

    def starts_dream(self, step: int) -> bool:
        cfg = self.config
        due = cfg.dream_steps > 0 and step > 0 and step % cfg.dream_every == 0
        return due and bool(self.earlier_levels())

    def batch_level(self, step: int, measure: MeasureFn | None = None) -> tuple[int, bool]:
        """Level of the batch at ``step`` and whether it replays an earlier level; counts the step.

        ``measure(levels)`` (accuracy per level) is called when a dream cycle opens and when it closes.
        """
        if self._open is not None and step >= self._open["start"] + self.config.dream_steps:
            self.close_dream(measure)
        if self._open is None and self.starts_dream(step):
            levels = self.earlier_levels()
            self._open = {"start": step, "levels": levels, "before": _measured(measure, levels)}
        if self._open is not None:
            levels = self._open["levels"]
            level = levels[(step - self._open["start"]) % len(levels)]
            self.dream_steps_per_level[level] = self.dream_steps_per_level.get(level, 0) + 1
            return level, True
        self.steps_per_level[self.level] = self.steps_per_level.get(self.level, 0) + 1
        return self.level, False

    def close_dream(self, measure: MeasureFn | None = None) -> None:
        """Finish an open dream cycle (also at the end of training), measuring its levels again."""
        if self._open is None:
            return
        self._open["after"] = _measured(measure, self._open["levels"])
        self.dreams.append(self._open)
        self._open = None

    def dream_effect(self) -> float | None:
        """Mean accuracy change on the replayed levels over a dream cycle (after - before), all cycles."""
        changes = [after - d["before"][lv] for d in self.dreams for lv, after in d["after"].items()
                   if lv in d["before"]]
        return sum(changes) / len(changes) if changes else None

    # state --------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """JSON-safe state (level keys as strings)."""
        return {
            "level": self.level, "highest": self.highest,
            "steps_per_level": _str_keys(self.steps_per_level),
            "dream_steps_per_level": _str_keys(self.dream_steps_per_level),
            "history": [dict(h) for h in self.history],
            "dreams": [_dream_to_json(d) for d in self.dreams],
            "open": _dream_to_json(self._open) if self._open is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        level = int(state["level"])
        if not self.config.min_level <= level <= self.config.max_level:
            bounds = f"{self.config.min_level}..{self.config.max_level}"
            raise ValueError(f"saved level {level} is outside {bounds}")
        self.level, self.highest = level, int(state["highest"])
        self.steps_per_level = _int_keys(state["steps_per_level"])
        self.dream_steps_per_level = _int_keys(state["dream_steps_per_level"])
        self.history = [dict(h) for h in state["history"]]
        self.dreams = [_dream_from_json(d) for d in state["dreams"]]
        self._open = _dream_from_json(state["open"]) if state.get("open") else None


def _measured(measure: MeasureFn | None, levels: list[int]) -> dict[int, float]:
    return {int(k): float(v) for k, v in measure(levels).items()} if measure is not None else {}


def _str_keys(values: dict[int, Any]) -> dict[str, Any]:
    return {str(k): v for k, v in values.items()}


def _int_keys(values: dict[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in values.items()}


def _dream_to_json(dream: dict[str, Any]) -> dict[str, Any]:
    out = {"start": dream["start"], "levels": list(dream["levels"]), "before": _str_keys(dream["before"])}
    if "after" in dream:
        out["after"] = _str_keys(dream["after"])
    return out


def _dream_from_json(dream: dict[str, Any]) -> dict[str, Any]:
    out = {"start": int(dream["start"]), "levels": [int(v) for v in dream["levels"]],
           "before": _int_keys(dream["before"])}
    if "after" in dream:
        out["after"] = _int_keys(dream["after"])
    return out


class CurriculumLoop(TrainLoop):
    """A TrainLoop whose checkpoints also carry the scheduler, so resume continues the same curriculum."""

    def __init__(self, *, curriculum: CurriculumScheduler, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.curriculum = curriculum

    def save(self) -> None:
        self.state.extra["curriculum"] = self.curriculum.state_dict()
        super().save()

    def restore(self) -> bool:
        found = super().restore()
        if found and "curriculum" in self.state.extra:
            self.curriculum.load_state_dict(self.state.extra["curriculum"])
        return found
