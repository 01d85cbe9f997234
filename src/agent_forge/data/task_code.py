"""Tiny Python functions in the style of MBPP: a described function, a one-line body, asserts.

The prompt ends inside the function (``def f(x):\\n    return``) and the answer is the returned
expression, so the training text is runnable code. Expected values in the asserts come from a Python
callable kept beside each family, never from running the expression text, so a test that runs the
canonical answer through the sandbox checks the two against each other.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from agent_forge.data.wordlists import NUMBER_WORDS


@dataclass(frozen=True)
class CodeFamily:
    """One kind of function: its names, parameter types, descriptions and the body that solves it."""

    names: tuple[str, ...]
    params: tuple[str, ...]  # "int" | "list" | "str", one entry per parameter
    descs: tuple[str, ...]  # may use {p0}, {p1}, {k}, {c}, {ch}
    expr: str  # the canonical answer, with the same {fields}
    func: Callable[..., object]  # func(consts, *args) -> expected return value
    consts: tuple[str, ...] = ()  # documents which of k (2..99), c (1..20), ch (a vowel) it uses


def _f(
    names: tuple[str, ...],
    params: tuple[str, ...],
    descs: tuple[str, ...],
    expr: str,
    func: Callable[..., object],
    consts: tuple[str, ...] = (),
) -> CodeFamily:
    return CodeFamily(names, params, descs, expr, func, consts)


_I, _II, _L, _S = ("int",), ("int", "int"), ("list",), ("str",)
_FAMILIES: dict[int, tuple[CodeFamily, ...]] = {
    1: (
        _f(
            ("add_{kw}", "plus_{kw}", "increase_by_{kw}"),
            _I,
            ("{p0} plus {k}", "{p0} increased by {k}", "the sum of {p0} and {k}", "{k} more than {p0}"),
            "{p0} + {k}",
            lambda q, x: x + q["k"],
            ("k",),
        ),
        _f(
            ("subtract_{kw}", "minus_{kw}", "decrease_by_{kw}"),
            _I,
            ("{p0} minus {k}", "{p0} decreased by {k}", "{k} less than {p0}"),
            "{p0} - {k}",
            lambda q, x: x - q["k"],
            ("k",),
        ),
        _f(
            ("times_{kw}", "multiply_by_{kw}", "scale_by_{kw}"),
            _I,
            ("{p0} times {k}", "{p0} multiplied by {k}", "{k} times {p0}"),
            "{p0} * {k}",
            lambda q, x: x * q["k"],
            ("k",),
        ),
        _f(
            ("square", "squared", "square_of"),
            _I,
            ("{p0} squared", "the square of {p0}", "{p0} times itself"),
            "{p0} * {p0}",
            lambda q, x: x * x,
        ),
    ),
    2: (
        _f(
            ("add", "sum_two", "plus", "total"),
            _II,
            ("the sum of {p0} and {p1}", "{p0} plus {p1}"),
            "{p0} + {p1}",
            lambda q, a, b: a + b,
        ),
        _f(
            ("subtract", "minus", "difference"),
            _II,
            ("{p0} minus {p1}", "{p1} subtracted from {p0}"),
            "{p0} - {p1}",
            lambda q, a, b: a - b,
        ),
        _f(
            ("multiply", "product", "times"),
            _II,
            ("the product of {p0} and {p1}", "{p0} times {p1}"),
            "{p0} * {p1}",
            lambda q, a, b: a * b,
        ),
        _f(
            ("larger", "max_of_two", "bigger"),
            _II,
            ("the larger of {p0} and {p1}", "the bigger of {p0} and {p1}"),
            "max({p0}, {p1})",
            lambda q, a, b: max(a, b),
        ),
        _f(
            ("smaller", "min_of_two", "lesser"),
            _II,
            ("the smaller of {p0} and {p1}", "the lesser of {p0} and {p1}"),
            "min({p0}, {p1})",
            lambda q, a, b: min(a, b),
        ),
        _f(
            ("scale_and_shift", "linear", "affine"),
            _I,
            ("{p0} times {k} plus {c}", "{c} more than {k} times {p0}"),
            "{p0} * {k} + {c}",
            lambda q, x: x * q["k"] + q["c"],
            ("k", "c"),
        ),
    ),
    3: (
        _f(
            ("is_even", "even", "check_even"),
            _I,
            ("True if {p0} is even, else False", "whether {p0} is even"),
            "{p0} % 2 == 0",
            lambda q, x: x % 2 == 0,
        ),
        _f(
            ("is_odd", "odd", "check_odd"),
            _I,
            ("True if {p0} is odd, else False", "whether {p0} is odd"),
            "{p0} % 2 == 1",
            lambda q, x: x % 2 == 1,
        ),
        _f(
            ("is_positive", "positive", "above_zero"),
            _I,
            ("whether {p0} is greater than zero",),
            "{p0} > 0",
            lambda q, x: x > 0,
        ),
        _f(
            ("divisible_by_{kw}", "is_multiple_of_{kw}"),
            _I,
            ("whether {p0} is divisible by {k}",),
            "{p0} % {k} == 0",
            lambda q, x: x % q["k"] == 0,
            ("k",),
        ),
        _f(
            ("remainder_{kw}", "mod_{kw}"),
            _I,
            ("the remainder of {p0} divided by {k}",),
            "{p0} % {k}",
            lambda q, x: x % q["k"],
            ("k",),
        ),
        _f(
            ("divide_down_{kw}", "floor_div_{kw}"),
            _I,
            ("{p0} divided by {k}, rounded down",),
            "{p0} // {k}",
            lambda q, x: x // q["k"],
            ("k",),
        ),
        _f(
            ("abs_diff", "distance", "gap"),
            _II,
            ("the absolute difference between {p0} and {p1}",),
            "abs({p0} - {p1})",
            lambda q, a, b: abs(a - b),
        ),
        _f(
            ("relu", "clip_negative", "non_negative"),
            _I,
            ("{p0} if it is positive, otherwise 0",),
            "max({p0}, 0)",
            lambda q, x: max(x, 0),
        ),
    ),
    4: (
        _f(
            ("total", "sum_list", "add_all"),
            _L,
            ("the sum of the numbers in {p0}",),
            "sum({p0})",
            lambda q, xs: sum(xs),
        ),
        _f(
            ("largest", "max_list", "biggest"),
            _L,
            ("the largest number in {p0}",),
            "max({p0})",
            lambda q, xs: max(xs),
        ),
        _f(
            ("smallest", "min_list", "lowest"),
            _L,
            ("the smallest number in {p0}",),
            "min({p0})",
            lambda q, xs: min(xs),
        ),
        _f(("count", "length", "size"), _L, ("how many items {p0} has",), "len({p0})", lambda q, xs: len(xs)),
        _f(
            ("spread", "value_range"),
            _L,
            ("the largest number in {p0} minus the smallest",),
            "max({p0}) - min({p0})",
            lambda q, xs: max(xs) - min(xs),
        ),
        _f(
            ("scale_all", "multiply_each"),
            _L,
            ("a list with every number of {p0} multiplied by {k}",),
            "[v * {k} for v in {p0}]",
            lambda q, xs: [v * q["k"] for v in xs],
            ("k",),
        ),
        _f(("first", "head"), _L, ("the first item of {p0}",), "{p0}[0]", lambda q, xs: xs[0]),
        _f(("last", "tail_item"), _L, ("the last item of {p0}",), "{p0}[-1]", lambda q, xs: xs[-1]),
        _f(("shout", "to_upper"), _S, ("{p0} in upper case",), "{p0}.upper()", lambda q, s: s.upper()),
        _f(("reverse", "backwards"), _S, ("{p0} reversed",), "{p0}[::-1]", lambda q, s: s[::-1]),
        _f(
            ("text_length", "count_letters"),
            _S,
            ("the number of characters in {p0}",),
            "len({p0})",
            lambda q, s: len(s),
        ),
    ),
    5: (
        _f(
            ("sum_even", "even_total"),
            _L,
            ("the sum of the even numbers in {p0}",),
            "sum(v for v in {p0} if v % 2 == 0)",
            lambda q, xs: sum(v for v in xs if v % 2 == 0),
        ),
        _f(
            ("count_above_{kw}", "how_many_over_{kw}"),
            _L,
            ("how many numbers in {p0} are greater than {k}",),
            "sum(1 for v in {p0} if v > {k})",
            lambda q, xs: sum(1 for v in xs if v > q["k"]),
            ("k",),
        ),
        _f(
            ("sum_squares", "square_total"),
            _L,
            ("the sum of the squares of the numbers in {p0}",),
            "sum(v * v for v in {p0})",
            lambda q, xs: sum(v * v for v in xs),
        ),
        _f(
            ("second_largest", "runner_up"),
            _L,
            ("the second largest number in {p0} (counting repeats)",),
            "sorted({p0})[-2]",
            lambda q, xs: sorted(xs)[-2],
        ),
        _f(
            ("count_{ch}", "how_many_{ch}"),
            _S,
            ("how many times the letter '{ch}' appears in {p0}",),
            "{p0}.count('{ch}')",
            lambda q, s: s.count(q["ch"]),
            ("ch",),
        ),
        _f(
            ("positives", "keep_positive"),
            _L,
            ("a list of the numbers in {p0} that are greater than zero",),
            "[v for v in {p0} if v > 0]",
            lambda q, xs: [v for v in xs if v > 0],
        ),
        _f(
            ("sort_descending", "largest_first"),
            _L,
            ("the numbers of {p0} sorted from largest to smallest",),
            "sorted({p0}, reverse=True)",
            lambda q, xs: sorted(xs, reverse=True),
        ),
        _f(
            ("mean_floor", "average_down"),
            _L,
            ("the average of {p0}, rounded down",),
            "sum({p0}) // len({p0})",
            lambda q, xs: sum(xs) // len(xs),
        ),
    ),
}

_PARAM_NAMES = {
    "int": ("x", "n", "num", "value"),
    "int2": (("a", "b"), ("x", "y"), ("m", "n"), ("first", "second")),
    "list": ("xs", "nums", "values", "numbers"),
    "str": ("s", "text", "word"),
}
_WORDS = ("banana", "apple", "level", "python", "code", "forge", "tiny", "model", "ocean", "idea", "queue")
_HEADS = (
    "Write a Python function {sig} that returns {desc}.\n",
    "Complete the function so it returns {desc}.\n",
    "# {name} returns {desc}\n",
    "Task: implement {sig}. It should return {desc}.\n",
    "Define {name} so that it gives {desc}.\n",
    "",
)


def _param_names(rng: random.Random, params: tuple[str, ...]) -> list[str]:
    if params == _II:
        return list(rng.choice(_PARAM_NAMES["int2"]))
    return [rng.choice(_PARAM_NAMES[p]) for p in params]


def _sample_arg(rng: random.Random, kind: str) -> object:
    if kind == "int":
        return rng.randint(-20, 60)
    if kind == "list":
        return [rng.randint(-9, 40) for _ in range(rng.randint(2, 6))]
    return rng.choice(_WORDS)


def _constants(rng: random.Random) -> dict:
    """Every constant a family may use; ``kw`` spells small ones out for function names."""
    k = rng.randint(2, 99)
    kw = NUMBER_WORDS[k] if k < len(NUMBER_WORDS) else str(k)
    return {"k": k, "kw": kw, "c": rng.randint(1, 20), "ch": rng.choice("aeiou")}


def _tests(rng: random.Random, family: CodeFamily, name: str, consts: dict) -> list[str]:
    calls: dict[str, object] = {}
    for _ in range(12):
        args = [_sample_arg(rng, kind) for kind in family.params]
        calls.setdefault(", ".join(map(repr, args)), family.func(consts, *args))
        if len(calls) == 3:
            break
    return [f"assert {name}({args}) == {expected!r}" for args, expected in calls.items()]


def generate_code(rng: random.Random, level: int) -> tuple[str, str, dict]:
    """One task: (prompt ending in ``return``, answer like " x + 3", meta with code_prefix and tests)."""
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    family = rng.choice(_FAMILIES[min(level, 5)])
    consts = _constants(rng)
    params = _param_names(rng, family.params)
    fill = {**consts, **{f"p{i}": p for i, p in enumerate(params)}}
    name = rng.choice(family.names).format(**fill)
    sig = f"{name}({', '.join(params)})"
    desc = rng.choice(family.descs).format(**fill)
    head = rng.choice(_HEADS).format(sig=sig, name=name, desc=desc)
    doc = f'    """Return {desc}."""\n' if not head else ""
    tests = _tests(rng, family, name, consts)
    if rng.random() < 0.5:  # MBPP shows a test with the task; it also varies the surface text
        head += f"# Example: {tests[0].removeprefix('assert ')}\n"
    code_prefix = f"def {sig}:\n{doc}    return"
    meta = {
        "source": "builtin",
        "entry_point": name,
        "code_prefix": code_prefix,
        "tests": tests,
        "test_setup": [],
    }
    return head + code_prefix, " " + family.expr.format(**fill), meta
