"""The unit-converter tool: a small table of length, mass, time, volume and temperature units.

Factors are exact fractions of one base unit per dimension (metre, kilogram, second, litre), so
conversions such as ``2 km to m`` give exact answers; temperatures are affine and go through kelvin.

Standard library only, imported relatively: an edge bundle carries a copy (see ``calls``).
"""

from __future__ import annotations

import re
from fractions import Fraction

from .calculator import ToolError, check_magnitude, format_number

_FACTORS: dict[str, dict[str, Fraction]] = {
    "length": {"mm": Fraction(1, 1000), "cm": Fraction(1, 100), "m": Fraction(1), "km": Fraction(1000),
               "in": Fraction(254, 10000), "ft": Fraction(3048, 10000), "yd": Fraction(9144, 10000),
               "mi": Fraction(1609344, 1000)},
    "mass": {"mg": Fraction(1, 10**6), "g": Fraction(1, 1000), "kg": Fraction(1), "t": Fraction(1000),
             "lb": Fraction(45359237, 10**8), "oz": Fraction(45359237, 16 * 10**8)},
    "time": {"ms": Fraction(1, 1000), "s": Fraction(1), "min": Fraction(60), "h": Fraction(3600),
             "day": Fraction(86400), "week": Fraction(604800)},
    "volume": {"ml": Fraction(1, 1000), "l": Fraction(1), "gal": Fraction(3785411784, 10**9),
               "cup": Fraction(2365882365, 10**10)},
}
# temperature: kelvin = (value + offset) * scale + shift
_TEMPERATURE: dict[str, tuple[Fraction, Fraction, Fraction]] = {
    "c": (Fraction(0), Fraction(1), Fraction(27315, 100)),
    "f": (Fraction(-32), Fraction(5, 9), Fraction(27315, 100)),
    "k": (Fraction(0), Fraction(1), Fraction(0)),
}
_ALIASES: dict[str, str] = {
    "millimeter": "mm", "centimeter": "cm", "meter": "m", "metre": "m", "kilometer": "km", "kilometre": "km",
    "inch": "in", "inches": "in", "foot": "ft", "feet": "ft", "yard": "yd", "mile": "mi",
    "milligram": "mg", "gram": "g", "kilogram": "kg", "ton": "t", "tonne": "t", "pound": "lb", "lbs": "lb",
    "ounce": "oz", "second": "s", "sec": "s", "minute": "min", "hour": "h", "hr": "h", "days": "day",
    "weeks": "week", "milliliter": "ml", "liter": "l", "litre": "l", "gallon": "gal", "cups": "cup",
    "celsius": "c", "fahrenheit": "f", "kelvin": "k", "°c": "c", "°f": "f",
}  # fmt: skip
_ARGS = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z°]+)\s+to\s+([A-Za-z°]+)\s*$")
UNITS: tuple[str, ...] = tuple(u for table in _FACTORS.values() for u in table) + tuple(_TEMPERATURE)


def canonical_unit(name: str) -> str:
    """The table's name of a unit (``"Kilometers"`` -> ``"km"``), or ToolError."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in UNITS and key.endswith("s"):
        key = _ALIASES.get(key[:-1], key[:-1])
    if key not in UNITS:
        raise ToolError(f"unknown unit '{name}'")
    return key


def _dimension(unit: str) -> str:
    if unit in _TEMPERATURE:
        return "temperature"
    return next(dim for dim, table in _FACTORS.items() if unit in table)


def convert_value(value: Fraction, source: str, target: str) -> Fraction:
    """``value`` in unit ``source`` expressed in unit ``target`` (same dimension), exactly."""
    source, target = canonical_unit(source), canonical_unit(target)
    if _dimension(source) != _dimension(target):
        raise ToolError(f"cannot convert {_dimension(source)} ({source}) to {_dimension(target)} ({target})")
    if source in _TEMPERATURE:
        offset, scale, shift = _TEMPERATURE[source]
        kelvin = (value + offset) * scale + shift
        offset, scale, shift = _TEMPERATURE[target]
        return (kelvin - shift) / scale - offset
    table = _FACTORS[_dimension(source)]
    return value * table[source] / table[target]


def convert(args: str) -> str:
    """The converter tool: ``"<number> <unit> to <unit>"`` -> the converted number."""
    match = _ARGS.match(args)
    if match is None:
        raise ToolError("expected '<number> <unit> to <unit>', e.g. '3 km to m'")
    number, source, target = match.groups()
    return format_number(check_magnitude(convert_value(Fraction(number), source, target)))
