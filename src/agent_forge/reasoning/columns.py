"""Column arithmetic: one equation of a story written as the single-digit facts that compute it.

A model of this size learns the few hundred single-digit facts (``7+5=12``, ``11-4=7``, ``9*3+2=29``) but
not whole two- and three-digit operations (it writes ``51 - 32 = 11``). A thought that works an operation
column by column, units first, the way it is taught in school, turns every step into facts of that kind:

- ``46 + 37`` -> ``46 + 37: 6+7=13 4+3+1=8 so 83`` (the carry is added into the next column);
- ``51 - 32`` -> ``51 - 32: 11-2=9 4-3=1 so 19`` (a borrow shows as the 10 taken and the digit lent);
- ``95 * 3`` -> ``95 * 3: 5*3=15 9*3+1=28 so 285`` (a multi-digit number times a one-digit one).

An operation whose operands are both one digit is a fact already and stays ``3 + 4 = 7``; division (and any
other form) stays as it is. The digits of a column are written without spaces so the facts are not read as
whole equations (``EQUATION``); ``column_equation`` reads a worked step back as its equation.
"""

from __future__ import annotations

import re

_OPERATION = re.compile(r"(\d+) ([-+*]) (\d+) = (\d+)")
_WORKED = re.compile(r"(\d+) ([-+*]) (\d+): .* so (\d+)")


def column_step(equation: str) -> str:
    """``a op b = c`` worked column by column (see the module); other text is returned unchanged."""
    match = _OPERATION.fullmatch(equation.strip())
    if not match:
        return equation
    a, op, b, c = match.group(1), match.group(2), match.group(3), match.group(4)
    if len(a) == 1 and len(b) == 1:
        return equation.strip()
    columns = {"+": _addition_columns, "-": _subtraction_columns, "*": _product_columns}[op](int(a), int(b))
    if columns is None:
        return equation.strip()
    return f"{a} {op} {b}: {' '.join(columns)} so {c}"


def column_equation(step: str) -> str:
    """A worked step read back as its equation: ``46 + 37: ... so 83`` -> ``46 + 37 = 83``."""
    match = _WORKED.fullmatch(step.strip())
    if not match:
        return step
    return f"{match.group(1)} {match.group(2)} {match.group(3)} = {match.group(4)}"


def _digits(value: int, width: int) -> list[int]:
    """Units first, padded with zeros to ``width``."""
    return [(value // 10**i) % 10 for i in range(width)]


def _addition_columns(a: int, b: int) -> list[str]:
    """Columns while both numbers have digits or a carry is left; the longer number's other digits are
    copied into the result as they are."""
    short, width = min(len(str(a)), len(str(b))), max(len(str(a)), len(str(b)))
    columns, carry = [], 0
    for i, (x, y) in enumerate(zip(_digits(a, width), _digits(b, width), strict=True)):
        if i >= short and not carry:
            break
        total = x + y + carry
        columns.append(f"{x}+{y}" + (f"+{carry}" if carry else "") + f"={total}")
        carry = total // 10
    return columns


def _subtraction_columns(a: int, b: int) -> list[str] | None:
    """Column subtraction with borrowing, while the lower number has digits or a digit above was lent from;
    None when the result would be negative."""
    if b > a:
        return None
    original = _digits(a, len(str(a)))
    top, bottom, columns = list(original), _digits(b, len(str(a))), []
    for i, y in enumerate(bottom):
        x = top[i]
        if i >= len(str(b)) and x == original[i]:
            break
        if x < y:  # borrow: this column takes 10, the next non-zero digit to the left lends 1
            x += 10
            _lend(top, i + 1)
        columns.append(f"{x}-{y}={x - y}")
    return columns


def _lend(top: list[int], column: int) -> None:
    """The digit at ``column`` lends 1; zeros on the way become 9 (they lend what they borrowed)."""
    while top[column] == 0:
        top[column] = 9
        column += 1
    top[column] -= 1


def _product_columns(a: int, b: int) -> list[str] | None:
    """A number times a one-digit number (either side); None when neither operand has one digit."""
    number, digit = (a, b) if len(str(b)) == 1 else (b, a)
    if len(str(digit)) != 1:
        return None
    columns, carry = [], 0
    for x in _digits(number, len(str(number))):
        total = x * digit + carry
        columns.append(f"{x}*{digit}" + (f"+{carry}" if carry else "") + f"={total}")
        carry = total // 10
    return columns
