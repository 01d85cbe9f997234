"""Built-in tools the runtime really executes, the call format, the runtime loop and tool-use tasks."""

from agent_forge.tools.calculator import ToolError, calculate, evaluate, format_number
from agent_forge.tools.calls import (
    BUILTIN_TOOLS,
    ParsedCall,
    ToolCall,
    ToolOutcome,
    execute,
    final_answer,
    format_call,
    last_call,
    parse_calls,
)
from agent_forge.tools.runtime import (
    Decoded,
    ToolGeneration,
    ToolRuntime,
    decode,
    generate_many_with_tools,
    generate_with_tools,
)
from agent_forge.tools.scoring import ToolReport, evaluate_tool_use, evaluate_tool_use_variants
from agent_forge.tools.tasks import TOOL_KIND, tool_solution, tool_tasks
from agent_forge.tools.units import convert, convert_value

__all__ = [
    "BUILTIN_TOOLS", "TOOL_KIND", "Decoded", "ParsedCall", "ToolCall", "ToolError", "ToolGeneration",
    "ToolOutcome", "ToolReport", "ToolRuntime", "calculate", "convert", "convert_value", "decode",
    "evaluate", "evaluate_tool_use", "evaluate_tool_use_variants", "execute", "final_answer", "format_call",
    "format_number", "generate_many_with_tools", "generate_with_tools", "last_call", "parse_calls",
    "tool_solution", "tool_tasks",
]  # fmt: skip
