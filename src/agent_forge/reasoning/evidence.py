"""What a thought may say about a task, derived only from the task's own verification data (``meta``).

Arithmetic: the story's equations, each worked in columns (``columns``), an inverse check of the last one,
a tempting wrong total, the distractor numbers. Multiple choice: a true verdict per option, plus computed
comparisons for the numeric families. Code: the task's own test cases and the returned expression. Every
statement is true by construction, so a thought built from it is checkable (``consistency``) and a model that
learns it learns real content.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from agent_forge.data.tasks import TaskExample
from agent_forge.reasoning.columns import column_step

EQUATION = re.compile(r"(-?\d+(?:\.\d+)?) ([-+*/]) (-?\d+(?:\.\d+)?) = (-?\d+(?:\.\d+)?)")
_INVERSE = {"+": "-", "-": "+", "*": "/", "/": "*"}
DOMAINS = {"arith": "as a bank balance", "mc": "in daily life", "code": "as a math function"}


@dataclass(frozen=True)
class Evidence:
    """True statements about one task, in the order a solver would make them."""

    kind: str
    steps: list[str]
    conclusion: str
    alternative: str
    check: str
    reverse: list[str]  # the same task seen from the other end (inverse equations, eliminations)
    unused: list[str] = field(default_factory=list)


def has_evidence(example: TaskExample) -> bool:
    """Whether the example carries the verification data a thought is built from."""
    meta = example.meta or {}
    if example.kind == "arith":
        return bool(meta.get("steps")) and "result" in meta
    if example.kind == "mc":
        return bool(meta.get("choices")) and "answer_index" in meta
    if example.kind == "code":
        return bool(meta.get("tests"))
    return False


def task_evidence(example: TaskExample) -> Evidence:
    builders = {"arith": _arith, "mc": _choice, "code": _code}
    if not has_evidence(example):
        raise ValueError(f"example {example.uid} ({example.kind}) has no verification data for a thought")
    return builders[example.kind](example)


def _arith(example: TaskExample) -> Evidence:
    meta = example.meta
    equations = [str(s) for s in meta["steps"]]
    steps = [column_step(s) for s in equations]  # worked digit by digit: facts this model can compute
    result = str(meta["result"])
    numbers = [int(float(x)) for x in meta.get("operands", []) if _is_number(x)]
    naive = str(sum(numbers)) if numbers else ""
    alternative = naive if naive and naive != result else str(int(float(result)) + 1)
    unused = [str(n) for n in meta.get("distractor_numbers", [])]
    reverse = [inverse_check(step) for step in reversed(equations)]
    return Evidence("arith", steps, result, alternative, reverse[0], reverse, unused)


def inverse_check(step: str) -> str:
    """``46 + 34 = 80`` -> ``80 - 34 = 46``: a step read backwards (itself if it is not an equation)."""
    match = EQUATION.fullmatch(step.strip())
    if not match:
        return step
    left, op, right, result = match.groups()
    return f"{result} {_INVERSE[op]} {right} = {left}"


def _choice(example: TaskExample) -> Evidence:
    meta = example.meta
    choices = [str(c) for c in meta["choices"]]
    labels = list(meta.get("labels") or "ABCDEFGH"[: len(choices)])
    right = int(meta["answer_index"])
    wrong = [i for i in range(len(choices)) if i != right]
    verdicts = [
        f"{labels[i]} {short(choices[i])} {'yes' if i == right else 'no'}" for i in range(len(choices))
    ]
    computed = _computed_choice_steps(meta.get("family", ""), meta.get("question", ""), choices, right)
    return Evidence(
        "mc",
        [*computed, verdicts[right]] if computed else verdicts,
        labels[right],
        labels[wrong[0]] if wrong else labels[right],
        f"{labels[right]} {short(choices[right])} answers it",
        [f"not {labels[i]}" for i in reversed(wrong)],
        [labels[i] for i in wrong],
    )


def _computed_choice_steps(family: str, question: str, choices: list[str], right: int) -> list[str]:
    """Comparisons or evaluations that show why the right option is right, for the numeric families."""
    if family == "numbers" and all(_is_number(c) for c in choices):
        largest = int(choices[right]) == max(int(c) for c in choices)
        ordered = sorted(choices, key=int, reverse=largest)
        return [f" {'>' if largest else '<'} ".join(ordered)]
    if family == "expressions":
        values = [(c, _evaluate(c)) for c in choices]
        return [f"{c} = {v}" for c, v in values if v is not None]
    if family == "multiples":
        divisor = re.search(r"(\d+)\D*$", question)
        if divisor and int(divisor.group(1)):
            k = int(divisor.group(1))
            return [f"{choices[right]} / {k} = {int(choices[right]) // k}"]
    return []


def _evaluate(expression: str) -> int | None:
    match = re.fullmatch(r"(\d+) ([+*]) (\d+)", expression.strip())
    if not match:
        return None
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
    return a + b if op == "+" else a * b


def _code(example: TaskExample) -> Evidence:
    tests = sorted((t.removeprefix("assert ").strip() for t in example.meta["tests"]), key=len)[:2]
    expression = example.answer.strip().splitlines()[0] if example.answer.strip() else ""
    conclusion, alternative = f"return {expression}", f"return {wrong_expression(expression)}"
    return Evidence("code", tests, conclusion, alternative, tests[-1], [f"{alternative} fails", *tests[:1]])


def wrong_expression(expression: str) -> str:
    """A near miss of the right expression: its first operator swapped (``x + 3`` -> ``x - 3``)."""
    swaps = {" + ": " - ", " - ": " + ", " * ": " + ", " // ": " * ", " % ": " // "}
    for old, new in swaps.items():
        if old in expression:
            return expression.replace(old, new, 1)
    return "None"


def short(text: str, words: int = 3) -> str:
    parts = text.split()
    return " ".join(parts[:words])


def _is_number(value: object) -> bool:
    try:
        float(str(value))
    except ValueError:
        return False
    return True
