"""Column arithmetic: every worked step is correct, each fact in it is a one-digit fact, and it reads back."""

from __future__ import annotations

import random
import re

import pytest

from agent_forge.reasoning.columns import column_equation, column_step
from agent_forge.reasoning.evidence import EQUATION

FACT = re.compile(r"(\d+)([-+*])(\d)(?:\+(\d))?=(\d+)")


@pytest.mark.parametrize(
    ("equation", "worked"),
    [
        ("46 + 37 = 83", "46 + 37: 6+7=13 4+3+1=8 so 83"),
        ("95 + 37 = 132", "95 + 37: 5+7=12 9+3+1=13 so 132"),
        ("406 + 19 = 425", "406 + 19: 6+9=15 0+1+1=2 so 425"),  # the 4 is copied, no column for it
        ("999 + 1 = 1000", "999 + 1: 9+1=10 9+0+1=10 9+0+1=10 so 1000"),
        ("51 - 32 = 19", "51 - 32: 11-2=9 4-3=1 so 19"),
        ("395 - 7 = 388", "395 - 7: 15-7=8 8-0=8 so 388"),  # the lending digit gets its column
        ("406 - 19 = 387", "406 - 19: 16-9=7 9-1=8 3-0=3 so 387"),  # a zero lends what it borrowed
        ("51 - 49 = 2", "51 - 49: 11-9=2 4-4=0 so 2"),
        ("95 * 3 = 285", "95 * 3: 5*3=15 9*3+1=28 so 285"),
        ("4 * 12 = 48", "4 * 12: 2*4=8 1*4=4 so 48"),  # the one-digit factor may come first
    ],
)
def test_worked_steps(equation: str, worked: str) -> None:
    assert column_step(equation) == worked
    assert column_equation(worked) == equation


@pytest.mark.parametrize("equation", ["3 + 4 = 7", "9 - 2 = 7", "84 / 3 = 28", "12 * 11 = 132", "unused: 4"])
def test_facts_and_other_forms_stay_as_they_are(equation: str) -> None:
    assert column_step(equation) == equation


def test_a_negative_difference_is_not_worked() -> None:
    assert column_step("3 - 15 = -12") == "3 - 15 = -12"


_RESULT = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b}


def _replay(worked: str) -> int:
    """The result the columns compute: every fact checked, carries and borrows followed, digits copied."""
    a, op, b = re.match(r"(\d+) ([-+*]) (\d+):", worked).groups()
    digits = []
    for top, sign, other, carry, total in FACT.findall(worked.split(":", 1)[1].split(" so ")[0]):
        value = _RESULT[sign](int(top), int(other))
        assert value + int(carry or 0) == int(total)
        assert sign != "-" or int(top) < 20  # a column takes at most one 10
        digits.append(int(total))
    expected = _RESULT[op](int(a), int(b))
    units = sum((d % 10) * 10**i for i, d in enumerate(digits[:-1]))
    shown = digits[-1] * 10 ** (len(digits) - 1) + units
    assert expected % 10 ** len(digits) == shown % 10 ** len(digits)  # the columns give the low digits
    return expected


def test_random_steps_are_correct_facts_that_read_back() -> None:
    rng = random.Random(5)
    for _ in range(2000):
        op = rng.choice("+-*")
        a = rng.randint(10, 9999)
        b = rng.randint(2, 9) if op == "*" else rng.randint(2, 999 if op == "+" else a)
        equation = f"{a} {op} {b} = {_RESULT[op](a, b)}"
        worked = column_step(equation)
        assert _replay(worked) == int(equation.split(" = ")[1])
        assert column_equation(worked) == equation
        assert not EQUATION.search(worked.split(":", 1)[1].split(" so ")[0])  # facts are not whole equations
