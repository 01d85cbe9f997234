"""A safe arithmetic evaluator for the calculator tool: a recursive-descent parser over exact fractions.

Model output is untrusted text, so nothing here calls ``eval``: only numbers, ``+ - * / // % **`` (or ``^``)
and parentheses parse, and size limits (input length, nesting, exponent, magnitude) keep a hostile
expression from exhausting time or memory.

Standard library only, imported relatively: an edge bundle carries a copy (see ``calls``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

MAX_CHARS = 200
MAX_DEPTH = 32
MAX_EXPONENT = 64
MAX_DIGITS = 40  # every intermediate value stays below 10**40 in magnitude
DECIMALS = 6
_TOKEN = re.compile(r"\s*(?:(\d+(?:\.\d*)?|\.\d+)|(\*\*|//|[-+*/%^()]))")


class ToolError(ValueError):
    """A tool refused its arguments; the message is shown to the model inside ``<result>``."""


@dataclass
class _Parser:
    tokens: list[str]
    pos: int = 0
    depth: int = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise ToolError("unexpected end of expression")
        self.pos += 1
        return token

    def expression(self) -> Fraction:
        value = self.term()
        while self.peek() in ("+", "-"):
            op, right = self.take(), self.term()
            value = check_magnitude(value + right if op == "+" else value - right)
        return value

    def term(self) -> Fraction:
        value = self.unary()
        while self.peek() in ("*", "/", "//", "%"):
            op, right = self.take(), self.unary()
            value = check_magnitude(_binary(op, value, right))
        return value

    def unary(self) -> Fraction:
        if self.peek() in ("+", "-"):
            sign = self.take()
            value = self.nested(self.unary)
            return -value if sign == "-" else value
        return self.power()

    def power(self) -> Fraction:
        base = self.atom()
        if self.peek() in ("**", "^"):
            self.take()
            return check_magnitude(_power(base, self.nested(self.unary)))
        return base

    def atom(self) -> Fraction:
        token = self.take()
        if token == "(":
            value = self.nested(self.expression)
            if self.take() != ")":
                raise ToolError("missing ')'")
            return value
        if token[0].isdigit() or token[0] == ".":
            return check_magnitude(Fraction(token))
        raise ToolError(f"unexpected '{token}'")

    def nested(self, rule: object) -> Fraction:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ToolError("expression nested too deeply")
        try:
            return rule()  # type: ignore[operator]
        finally:
            self.depth -= 1


def _binary(op: str, left: Fraction, right: Fraction) -> Fraction:
    if op == "*":
        return left * right
    if right == 0:
        raise ToolError("division by zero")
    if op == "/":
        return left / right
    if op == "//":
        return Fraction(left // right)
    return left % right


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1:
        raise ToolError("only whole-number exponents are supported")
    if abs(exponent) > MAX_EXPONENT:
        raise ToolError(f"exponent larger than {MAX_EXPONENT}")
    if base == 0 and exponent < 0:
        raise ToolError("division by zero")
    return base ** int(exponent)


def check_magnitude(value: Fraction) -> Fraction:
    limit = 10**MAX_DIGITS
    if abs(value.numerator) >= limit * value.denominator or value.denominator >= limit:
        raise ToolError("number too large")
    return value


def tokenize(text: str) -> list[str]:
    """Numbers and operators; anything else (letters, names, underscores) is refused."""
    tokens, pos, text = [], 0, text.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ToolError(f"unexpected character '{text[pos:].strip()[:1]}'")
        tokens.append(match.group(1) or match.group(2))
        pos = match.end()
    return tokens


def evaluate(text: str) -> Fraction:
    """The exact value of an arithmetic expression, or ToolError."""
    if len(text) > MAX_CHARS:
        raise ToolError(f"expression longer than {MAX_CHARS} characters")
    parser = _Parser(tokenize(text))
    if not parser.tokens:
        raise ToolError("empty expression")
    value = parser.expression()
    if parser.peek() is not None:
        raise ToolError(f"unexpected '{parser.peek()}'")
    return value


def format_number(value: Fraction) -> str:
    """Integers exactly; other values rounded to six decimals without trailing zeros."""
    if value.denominator == 1:
        return str(value.numerator)
    scaled = round(abs(value) * 10**DECIMALS)
    whole, frac = divmod(scaled, 10**DECIMALS)
    digits = f"{frac:0{DECIMALS}d}".rstrip("0")
    sign = "-" if value < 0 and scaled else ""
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def calculate(args: str) -> str:
    """The calculator tool: evaluate ``args`` and format the result."""
    return format_number(evaluate(args))
