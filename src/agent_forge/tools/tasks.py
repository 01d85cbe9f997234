"""Tool-use tasks with verifiable answers: arithmetic for the calculator, conversions for the converter.

Each example carries the call that solves it and the result the runtime returns, so it serves three
uses: queries for the tool bake, held-out evaluation of format and accuracy, and reference solutions.
The train/held-out split is the task split of ``agent_forge.data.tasks`` (a hash of the uid).
"""

from __future__ import annotations

import random
from fractions import Fraction

from agent_forge.data.tasks import Split, TaskExample, make_example, split_of
from agent_forge.tools.calculator import calculate
from agent_forge.tools.calls import RESULT_CLOSE, RESULT_OPEN, ToolCall, format_call
from agent_forge.tools.units import convert, convert_value

TOOL_KIND = "tool"
_OPS = ("+", "-", "*")
_CONVERSIONS = (("km", "m"), ("m", "cm"), ("kg", "g"), ("h", "min"), ("min", "s"), ("l", "ml"),
                ("day", "h"), ("ft", "in"), ("week", "day"), ("g", "mg"))
_CALC_TEMPLATES = ("What is {expr}? Answer:", "Compute {expr}. Answer:", "Calculate {expr}. Answer:")
_CONVERT_TEMPLATES = ("How many {target} are in {value} {source}? Answer:",
                      "Convert {value} {source} to {target}. Answer:")


def _calculator_task(rng: random.Random, level: int, mixed_widths: bool = False) -> tuple[str, ToolCall]:
    """A calculation of ``level``: every term of the level's width, or (``mixed_widths``) each after the first
    of that width or one digit fewer."""
    # equal widths in the training mix. Measured (tenth session, whole default run): mixed widths there made
    # the final model copy `347 * 29` whole (it wrote `347 + 29`; with equal widths `347 * 21`), but Phase 1
    # fell (arith 0.100 -> 0.072, code 0.988 -> 0.960) and the baked model's tools mode with it (0.554 ->
    # 0.373 on 1000 held-out arithmetic tasks): not kept there
    digits = min(level + 1, 4)
    count = 2 + (level > 2)
    widths = [digits, *(rng.randint(digits - 1, digits) for _ in range(count - 1))] if mixed_widths \
        else [digits] * count
    terms = [str(rng.randint(10 ** (width - 1), 10**width - 1)) for width in widths]
    expr = terms[0]
    for term in terms[1:]:
        expr += f" {rng.choice(_OPS)} {term}"
    return rng.choice(_CALC_TEMPLATES).format(expr=expr), ToolCall("calculator", expr)


def _convert_task(rng: random.Random, level: int) -> tuple[str, ToolCall]:
    source, target = rng.choice(_CONVERSIONS)
    if convert_value(Fraction(1), source, target) < 1:
        source, target = target, source
    value = rng.randint(2, 10 ** min(level, 3))
    prompt = rng.choice(_CONVERT_TEMPLATES).format(value=value, source=source, target=target)
    return prompt, ToolCall("convert", f"{value} {source} to {target}")


def make_tool_example(prompt: str, call: ToolCall, level: int) -> TaskExample:
    run = calculate if call.name == "calculator" else convert
    result = run(call.args)
    meta = {"tool": call.name, "args": call.args, "result": result, "source": "tools"}
    return make_example(TOOL_KIND, level, prompt, f" {result}", meta)


TOOL_NAMES = ("calculator", "convert")


def tool_tasks(n: int, seed: int, split: Split = "train", max_level: int = 3,
               mixed_widths: bool = False, tools: tuple[str, ...] = TOOL_NAMES) -> list[TaskExample]:
    """``n`` distinct tool tasks of ``split``, the ``tools`` taking turns (an equal share each), levels
    1..max_level, reproducible (``mixed_widths``: see ``_calculator_task``)."""
    unknown = sorted(set(tools) - set(TOOL_NAMES))
    if not tools or unknown:
        raise ValueError(f"tools must name some of {TOOL_NAMES}, got {tools}")
    rng = random.Random(f"{seed}:tools:{split}")
    examples: list[TaskExample] = []
    seen: set[str] = set()
    budget = 1000 + 100 * n
    while len(examples) < n and budget > 0:
        budget -= 1
        level = rng.randint(1, max_level)
        turn = tools[len(examples) % len(tools)]
        made = _calculator_task(rng, level, mixed_widths) if turn == "calculator" else _convert_task(rng, level)
        example = make_tool_example(*made, level)
        if split_of(example.uid) != split or example.uid in seen:
            continue
        seen.add(example.uid)
        examples.append(example)
    if len(examples) < n:
        raise ValueError(f"only {len(examples)} distinct {split} tool tasks; ask for fewer")
    return examples


def tool_solution(example: TaskExample) -> str:
    """The reference completion: the call, the runtime's result, the answer, ``<eos>``."""
    call = ToolCall(example.meta["tool"], example.meta["args"])
    return f"{format_call(call)}{RESULT_OPEN}{example.meta['result']}{RESULT_CLOSE}{example.answer}<eos>"
