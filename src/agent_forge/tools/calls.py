"""The tool-call format ``<tool>NAME</tool><args>ARGS</args>`` (answered by ``<result>``) and its parser.

The tags are special tokens of every session tokenizer (``agent_forge.data.tokenizer.SPECIAL_TOKENS``), so
a call is a handful of tokens whatever the tokenizer learned. Parsing is strict and never evaluates
anything: a malformed call, an unknown tool or arguments a tool refuses give an error result, not an
exception, so generation always continues safely.

This module, ``calculator`` and ``units`` use the standard library and each other only (relative imports):
an edge bundle carries byte-identical copies of the three in ``forge_runtime/tools/``, so the torch-free
runtime executes calls exactly as the package does (``agent_forge.export.bundle.copy_runtime``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from .calculator import ToolError, calculate
from .units import convert

TOOL_OPEN, TOOL_CLOSE, ARGS_OPEN, ARGS_CLOSE = "<tool>", "</tool>", "<args>", "</args>"
RESULT_OPEN, RESULT_CLOSE = "<result>", "</result>"
MAX_ARGS_CHARS = 200
_CALL = re.compile(r"<tool>\s*([A-Za-z_][A-Za-z0-9_]*)\s*</tool>\s*<args>([^<]*)</args>")
_RESULT = re.compile(r"<result>([^<]*)</result>")

Tool = Callable[[str], str]
BUILTIN_TOOLS: dict[str, Tool] = {"calculator": calculate, "convert": convert}


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: str


@dataclass(frozen=True)
class ParsedCall:
    """One ``<tool>`` segment of a text: the call when it is well-formed, else why it is not."""

    text: str
    call: ToolCall | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.call is not None


@dataclass(frozen=True)
class ToolOutcome:
    """What the runtime appends: ``ok`` is False for a refused call (the value then says why)."""

    call: ToolCall | None
    ok: bool
    value: str

    @property
    def result_text(self) -> str:
        return f"{RESULT_OPEN}{self.value if self.ok else 'error: ' + self.value}{RESULT_CLOSE}"


def format_call(call: ToolCall) -> str:
    return f"{TOOL_OPEN}{call.name}{TOOL_CLOSE}{ARGS_OPEN}{call.args}{ARGS_CLOSE}"


def parse_segment(segment: str, tools: Mapping[str, Tool] = BUILTIN_TOOLS) -> ParsedCall:
    """Parse one segment that starts at ``<tool>``; it must be exactly one complete call."""
    match = _CALL.match(segment)
    if match is None:
        return ParsedCall(segment, None, "malformed call")
    name, args = match.group(1), match.group(2).strip()
    if name not in tools:
        return ParsedCall(segment, None, f"unknown tool '{name}'")
    if not args or len(args) > MAX_ARGS_CHARS:
        return ParsedCall(segment, None, "empty or oversized arguments")
    return ParsedCall(segment, ToolCall(name, args), None)


def parse_calls(text: str, tools: Mapping[str, Tool] = BUILTIN_TOOLS) -> list[ParsedCall]:
    """Every ``<tool>`` segment of ``text`` (up to the next ``<tool>``), parsed."""
    starts = [m.start() for m in re.finditer(re.escape(TOOL_OPEN), text)]
    ends = [*starts[1:], len(text)] if starts else []
    return [parse_segment(_call_part(text[a:b]), tools) for a, b in zip(starts, ends, strict=True)]


def _call_part(segment: str) -> str:
    """The segment up to its ``</args>`` (what follows, a result or an answer, is not part of the call)."""
    cut = segment.find(ARGS_CLOSE)
    return segment if cut < 0 else segment[: cut + len(ARGS_CLOSE)]


def last_call(text: str, tools: Mapping[str, Tool] = BUILTIN_TOOLS) -> ParsedCall | None:
    """The call that ``text`` ends with, when it ends with ``</args>``."""
    if not text.endswith(ARGS_CLOSE) or TOOL_OPEN not in text:
        return None
    return parse_segment(text[text.rfind(TOOL_OPEN) :], tools)


def execute(parsed: ParsedCall, tools: Mapping[str, Tool] = BUILTIN_TOOLS) -> ToolOutcome:
    """Run a parsed call; malformed calls and refused arguments become error outcomes."""
    if parsed.call is None:
        return ToolOutcome(None, False, parsed.error or "malformed call")
    try:
        return ToolOutcome(parsed.call, True, tools[parsed.call.name](parsed.call.args))
    except ToolError as exc:
        return ToolOutcome(parsed.call, False, str(exc))


def same_answer(given: str, expected: str) -> bool:
    """Numbers compare by value (``"2000.0"`` == ``"2000"``), anything else as stripped text."""
    given, expected = given.strip(), expected.strip()
    try:
        return Fraction(given) == Fraction(expected)
    except (ValueError, ZeroDivisionError):
        return given == expected


def results_in(text: str) -> list[str]:
    """The contents of every ``<result>`` block of ``text``."""
    return _RESULT.findall(text)


def final_answer(text: str) -> str:
    """What the model answered: the text after the last ``</result>`` (or all of it), up to ``<eos>``."""
    tail = text[text.rfind(RESULT_CLOSE) + len(RESULT_CLOSE) :] if RESULT_CLOSE in text else text
    return tail.split("<eos>", 1)[0].strip()
