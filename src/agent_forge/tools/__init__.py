"""Built-in tools the runtime really executes, the call format, the runtime hook, tool tasks and demonstrations."""

from agent_forge.tools.calculator import ToolError, calculate, evaluate, format_number
from agent_forge.tools.calls import (
    BUILTIN_TOOLS,
    ParsedCall,
    ToolCall,
    ToolOutcome,
    execute,
    format_call,
    last_call,
    parse_calls,
    results_in,
    same_answer,
)
from agent_forge.tools.runtime import AnswerCue, Decoded, ToolRuntime, decode
from agent_forge.tools.tasks import TOOL_KIND, tool_solution, tool_tasks
from agent_forge.tools.units import convert, convert_value

__all__ = [
    "BUILTIN_TOOLS", "TOOL_KIND", "AnswerCue", "Decoded", "ParsedCall", "ToolCall", "ToolError", "ToolOutcome",
    "ToolRuntime", "calculate", "convert", "convert_value", "decode", "evaluate", "execute", "format_call",
    "format_number", "last_call", "parse_calls", "results_in", "same_answer", "tool_solution", "tool_tasks",
]  # fmt: skip
