"""Accuracy that can be told from noise: counts, Wilson 95% intervals, chance and majority baselines.

Every accuracy figure the project reports (``agent-forge eval``, the D6 table, the report, the benchmarks)
comes from ``accuracy_table``: overall, per kind and per kind and level, each with its count, the Wilson
score interval (it stays inside [0, 1] and is honest at small counts, unlike the normal approximation),
the chance level of the kind (multiple choice: the mean of 1 / number of options; generated answers: 0)
and the majority baseline (always giving the most frequent answer of that group, e.g. always " B"), so a
letter prior is never mistaken for skill.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent_forge.data.tasks import TaskExample

Z_95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(correct: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of ``correct`` successes in ``n`` trials ((0, 1) when n is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = correct / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def chance_level(example: TaskExample) -> float:
    """The expected accuracy of a uniform guess: 1 / options for multiple choice, 0 for written answers."""
    choices = example.meta.get("choices")
    if example.kind == "mc" and isinstance(choices, list) and choices:
        return 1.0 / len(choices)
    return 0.0


def majority_share(examples: Sequence[TaskExample]) -> float:
    """The accuracy of always giving the most frequent answer among ``examples``."""
    if not examples:
        return 0.0
    return Counter(e.answer for e in examples).most_common(1)[0][1] / len(examples)


@dataclass(frozen=True)
class Accuracy:
    """Exact-match accuracy of one group with what it should be compared against."""

    correct: int
    n: int
    chance: float
    majority: float

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    def to_dict(self) -> dict[str, float | int]:
        low, high = self.interval
        return {"accuracy": self.value, "correct": self.correct, "n": self.n, "ci_low": low, "ci_high": high,
                "chance": self.chance, "majority": self.majority}

    def apart_from(self, other: Accuracy) -> bool:
        """Do the two 95% intervals not overlap (the only way two figures are said to differ)?"""
        low, high = self.interval
        other_low, other_high = other.interval
        return low > other_high or other_low > high


def group_accuracy(examples: Sequence[TaskExample], correct: Sequence[bool]) -> Accuracy:
    chance = sum(chance_level(e) for e in examples) / len(examples) if examples else 0.0
    return Accuracy(sum(bool(c) for c in correct), len(examples), chance, majority_share(examples))


def accuracy_table(examples: Sequence[TaskExample], correct: Sequence[bool]) -> dict:
    """``{"overall": {...}, "kinds": {kind: {..., "levels": {level: {...}}}}}`` of ``Accuracy.to_dict``s.

    The overall majority baseline is the example-weighted mean of the per-kind ones (one answer for
    every kind at once would be a meaningless baseline).
    """
    if len(examples) != len(correct):
        raise ValueError(f"{len(examples)} examples but {len(correct)} results")
    kinds: dict[str, dict] = {}
    for kind in sorted({e.kind for e in examples}):
        chosen = [i for i, e in enumerate(examples) if e.kind == kind]
        entry = group_accuracy([examples[i] for i in chosen], [correct[i] for i in chosen]).to_dict()
        entry["levels"] = {}
        for level in sorted({examples[i].level for i in chosen}):
            inner = [i for i in chosen if examples[i].level == level]
            accuracy = group_accuracy([examples[i] for i in inner], [correct[i] for i in inner])
            entry["levels"][level] = accuracy.to_dict()
        kinds[kind] = entry
    overall = group_accuracy(examples, correct).to_dict()
    if examples:
        overall["majority"] = sum(k["majority"] * k["n"] for k in kinds.values()) / len(examples)
    return {"overall": overall, "kinds": kinds}


def flat_accuracy(examples: Sequence[TaskExample], correct: Sequence[bool]) -> dict[str, float]:
    """``accuracy_table`` as flat registry metrics: ``accuracy_{kind}`` with ``_n``, ``_ci_low``,
    ``_ci_high``, ``_chance`` and ``_majority``, ``accuracy_{kind}_level_{level}``, and the overall interval."""
    table = accuracy_table(examples, correct)
    flat = {"accuracy_ci_low": table["overall"]["ci_low"], "accuracy_ci_high": table["overall"]["ci_high"],
            "accuracy_n": table["overall"]["n"], "accuracy_chance": table["overall"]["chance"]}
    for kind, entry in table["kinds"].items():
        flat[f"accuracy_{kind}"] = entry["accuracy"]
        for name in ("n", "ci_low", "ci_high", "chance", "majority"):
            flat[f"accuracy_{kind}_{name}"] = entry[name]
        for level, inner in entry["levels"].items():
            flat[f"accuracy_{kind}_level_{level}"] = inner["accuracy"]
    return flat
