"""The calculator and unit-converter tools: right answers, and refusals that never reach eval()."""

from __future__ import annotations

import builtins
from fractions import Fraction

import pytest

from agent_forge.tools import ToolError, calculate, convert, convert_value, evaluate, format_number


@pytest.mark.parametrize(
    ("expression", "expected"),
    [("2 + 3 * 4", "14"), ("(2 + 3) * 4", "20"), ("2 ** 3 ** 2", "512"), ("2^10", "1024"), ("-2 ** 2", "-4"),
     ("7 / 2", "3.5"), ("7 // 2", "3"), ("-7 % 3", "2"), ("1 / 3", "0.333333"), ("0.1 + 0.2", "0.3"),
     ("--3", "3"), ("2 * (3 + (4 - 1)) / 3", "4"), (" 994 * 610 ", "606340"), ("10 - 25", "-15")],
)  # fmt: skip
def test_calculator_computes_exactly(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "open('x')", "2 +", "(1 + 2", "1 + 2)", "", "1 / 0", "5 % 0",
     "2 ** 1000", "9" * 60, "x + 1", "1e5", "2 ** 0.5", "(" * 40 + "1" + ")" * 40, "1" + "+1" * 150,
     "0 ** -1", "lambda: 1", "[1, 2]", "1; 2"],
)  # fmt: skip
def test_calculator_refuses_anything_but_arithmetic_without_eval(expression: str, monkeypatch) -> None:
    def forbidden(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("eval/exec must never be called")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(ToolError):
        calculate(expression)


def test_values_are_exact_fractions_and_formatting_rounds_to_six_decimals() -> None:
    assert evaluate("1 / 3 * 3") == 1
    assert format_number(Fraction(-1, 8)) == "-0.125"
    assert format_number(Fraction(2, 3)) == "0.666667"
    assert format_number(Fraction(-1, 10**9)) == "0"


@pytest.mark.parametrize(
    ("args", "expected"),
    [("3 km to m", "3000"), ("2 kilometers to m", "2000"), ("5 feet to inches", "60"), ("90 min to h", "1.5"),
     ("100 C to F", "212"), ("32 f to c", "0"), ("0 K to C", "-273.15"), ("2 lbs to kg", "0.907185"),
     ("1 gal to l", "3.785412"), ("1 week to days", "7"), ("2.5 kg to g", "2500")],
)  # fmt: skip
def test_unit_conversions(args: str, expected: str) -> None:
    assert convert(args) == expected


def test_conversions_round_trip_exactly() -> None:
    for source, target in [("mi", "km"), ("oz", "g"), ("F", "K"), ("cup", "ml")]:
        value = Fraction(37, 3)
        assert convert_value(convert_value(value, source, target), target, source) == value


@pytest.mark.parametrize("args", ["3 km to kg", "3 parsec to m", "km to m", "3 km in m", "3 km", "", "1e3 m to km"])
def test_unit_converter_refuses_bad_arguments(args: str) -> None:
    with pytest.raises(ToolError):
        convert(args)
