"""Tool-use demonstrations: the calls that solve a task, one operation per call, with the runtime's results.

An arithmetic word problem records its equations in ``meta["steps"]`` (``"41 + 24 = 65"``); each becomes one
calculator call on the running total (``<args>41 + 24</args>``), except that a product the story adds at
once ("3 boxes of 8") is fused into the call that adds it (``41 + 3 * 8``), so every call starts from the
previous result. A tool task (``tools.tasks``) carries its one call. The results are computed by the tools
themselves, never copied from the task, so a demonstration is exactly what the runtime would insert.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agent_forge.data.tasks import TaskExample, mix_tasks
from agent_forge.tools.calls import BUILTIN_TOOLS, RESULT_CLOSE, RESULT_OPEN, ToolCall, format_call
from agent_forge.tools.tasks import TOOL_KIND, tool_tasks

_EQUATION = re.compile(r"^\s*(\d+)\s*([-+*/])\s*(\d+)\s*=\s*(\d+)\s*$")


def _equations(steps: Sequence[str]) -> list[tuple[int, str, int, int]]:
    parsed = []
    for step in steps:
        match = _EQUATION.match(step)
        if match is None:
            raise ValueError(f"not an equation 'a op b = c': {step!r}")
        a, op, b, c = match.groups()
        parsed.append((int(a), op, int(b), int(c)))
    return parsed


def arithmetic_calls(steps: Sequence[str], start: int) -> list[ToolCall]:
    """One calculator call per change of the running total (which begins at ``start``)."""
    equations, calls, total, index = _equations(steps), [], start, 0
    while index < len(equations):
        a, op, b, c = equations[index]
        following = equations[index + 1] if index + 1 < len(equations) else None
        if op == "*" and following is not None and following[:3] == (total, "+", c):  # "3 boxes of 8", added
            calls.append(ToolCall("calculator", f"{total} + {a} * {b}"))
            total, index = following[3], index + 2
        elif a == total:
            calls.append(ToolCall("calculator", f"{a} {op} {b}"))
            total, index = c, index + 1
        else:
            raise ValueError(f"steps do not follow a running total from {start}: {list(steps)}")
    return calls


def task_calls(example: TaskExample) -> list[ToolCall]:
    """The calls that solve ``example``: its steps as calculator calls, or a tool task's own call."""
    meta = example.meta or {}
    if example.kind == TOOL_KIND:
        return [ToolCall(meta["tool"], meta["args"])]
    if example.kind == "arith" and meta.get("steps"):
        return arithmetic_calls(meta["steps"], int(meta["operands"][0]))
    return []


def calls_with_results(calls: Sequence[ToolCall]) -> list[tuple[str, str]]:
    """Per call, (the call's text, the ``<result>`` text the runtime appends), results really computed."""
    return [(format_call(call), f"{RESULT_OPEN}{BUILTIN_TOOLS[call.name](call.args)}{RESULT_CLOSE}")
            for call in calls]


def demo_tasks(n: int, seed: int, levels: Sequence[int] = (1, 2, 3, 4, 5), tool_task_share: float = 0.25,
               mixed_widths: bool = False) -> list[TaskExample]:
    """``n`` training-split tasks to demonstrate tools on: arithmetic word problems, every level alike, and
    a ``tool_task_share`` of bare calculations (``mixed_widths``: operands of unequal width too) and unit
    conversions."""
    bare = round(n * tool_task_share)
    words = mix_tasks(n - bare, seed, split="train", kinds=("arith",), levels=levels)
    return words + (tool_tasks(bare, seed, "train", mixed_widths=mixed_widths) if bare else [])
