"""Logical consistency and relevance of a thought, checked against the task's own verification data.

A thought is split into ``<step>`` segments and every checkable claim in it is tested:
- equations ``a op b = c``: the arithmetic holds and a and b are grounded (numbers of the prompt, earlier
  results of the thought, or the task's own steps);
- comparisons ``a > b > c``: each adjacent pair holds;
- option verdicts ``B cabbage yes``: yes exactly for the right option;
- test cases ``f(3) == 9``: one of the task's tests;
- conclusions ``so X``, ``posterior: X``, ``X, not Y``, ``not X``: X is (or is not) the task's answer.
Consistency is the share of claims that hold (0 when the thought makes none). Relevance is the share of
the thought's content words (not the strategies' scaffolding phrases) that occur in the task's text.
"""

from __future__ import annotations

import re

from agent_forge.data.tasks import TaskExample
from agent_forge.reasoning.columns import column_equation
from agent_forge.reasoning.evidence import DOMAINS, EQUATION
from agent_forge.reasoning.strategies import STEP, phrase_words

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_COMPARISON = re.compile(r"-?\d+(?: [<>] -?\d+)+")
_VERDICT = re.compile(r"^([A-H])\b.*\b(yes|no)$")
_TEST = re.compile(r"^\w+\(.*\) == .+$")
_CONCLUSION = re.compile(r"^(?:so |posterior: )(.+)$|^(.+), not (.+)$|^not ([A-H])$")
_MARKUP = re.compile(r"<[/a-z]+>")
SCAFFOLD = frozenset(
    {
        "so",
        "not",
        "yes",
        "no",
        "unused",
        "posterior",
        "really",
        "ok",
        "or",
        "answers",
        "it",
        "return",
        "fails",
    }
)


def segments(thought: str) -> list[str]:
    """The ``<step>`` segments of a thought, markup removed, a step worked in columns read as its equation."""
    parts = (_MARKUP.sub(" ", part).strip() for part in thought.split(STEP))
    return [column_equation(part) for part in parts if part]


def logical_consistency(thought: str, task: TaskExample) -> float:
    """Share of the thought's checkable claims that hold for ``task`` (0.0 without claims)."""
    results: list[bool] = []
    grounded = {float(x) for x in _NUMBER.findall(task.prompt)} | _step_numbers(task)
    for segment in segments(thought):
        results += _equation_claims(segment, grounded)
        results += _comparison_claims(segment)
        results += _option_claims(segment, task)
        results += _conclusion_claims(segment, task)
    return sum(results) / len(results) if results else 0.0


def _step_numbers(task: TaskExample) -> set[float]:
    steps = (task.meta or {}).get("steps") or []
    return {float(x) for step in steps for x in _NUMBER.findall(str(step))}


def _equation_claims(segment: str, grounded: set[float]) -> list[bool]:
    claims = []
    for left, op, right, result in EQUATION.findall(segment):
        a, b, c = float(left), float(right), float(result)
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("nan")}[op]
        holds = abs(value - c) < 1e-6 * max(1.0, abs(c))
        claims.append(holds and a in grounded and b in grounded)
        if holds:
            grounded.add(c)
    return claims


def _comparison_claims(segment: str) -> list[bool]:
    claims = []
    for match in _COMPARISON.finditer(segment):
        parts = match.group(0).split()
        for i in range(0, len(parts) - 2, 2):
            a, op, b = float(parts[i]), parts[i + 1], float(parts[i + 2])
            claims.append(a > b if op == ">" else a < b)
    return claims


def _option_claims(segment: str, task: TaskExample) -> list[bool]:
    meta = task.meta or {}
    if task.kind == "code" and _TEST.match(segment):
        return [segment in {t.removeprefix("assert ").strip() for t in meta.get("tests", [])}]
    match = _VERDICT.match(segment)
    if task.kind != "mc" or not match:
        return []
    return [(match.group(1) == task.answer.strip()) == (match.group(2) == "yes")]


def _conclusion_claims(segment: str, task: TaskExample) -> list[bool]:
    match = _CONCLUSION.match(segment)
    if not match:
        return []
    stated, other, refuted, negated = match.group(1) or match.group(2), match.group(3), None, match.group(4)
    if negated:
        return [not _is_answer(negated, task)]
    refuted = other
    claims = [_is_answer(stated, task)]
    if refuted is not None:
        claims.append(not _is_answer(refuted, task))
    return claims


def _is_answer(text: str, task: TaskExample) -> bool:
    stated = text.strip().removeprefix("return ").strip()
    answer = task.answer.strip().splitlines()[0].strip() if task.answer.strip() else ""
    return stated == answer


def content_words(text: str) -> list[str]:
    """Lower-case words and numbers of a text, without markup, scaffolding or strategy phrases."""
    words = re.findall(r"[a-z_]+|\d+", _MARKUP.sub(" ", text).lower())
    skip = SCAFFOLD | phrase_words() | {w for phrase in DOMAINS.values() for w in phrase.split()}
    return [w for w in words if w not in skip]


def relevance(thought: str, task: TaskExample) -> float:
    """Share of the thought's content words found in the task (prompt, answer, choices, tests)."""
    words = content_words(" ".join(segments(thought)))
    if not words:
        return 0.0
    meta = task.meta or {}
    source = " ".join([task.prompt, task.answer, *map(str, meta.get("choices", [])), *meta.get("tests", [])])
    vocabulary = set(re.findall(r"[a-z_]+|\d+", source.lower())) | {str(int(x)) for x in _step_numbers(task)}
    return sum(w in vocabulary for w in words) / len(words)
