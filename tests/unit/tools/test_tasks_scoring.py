"""Tool-use tasks: verifiable, reproducible, split by hash."""

from __future__ import annotations

import pytest

from agent_forge.data.tasks import split_of
from agent_forge.tools import (
    calculate,
    convert,
    execute,
    tool_solution,
    tool_tasks,
)
from agent_forge.tools.calls import parse_calls


def test_tool_tasks_are_reproducible_split_by_hash_and_verifiable() -> None:
    train, held = tool_tasks(40, seed=3, split="train"), tool_tasks(20, seed=3, split="heldout")
    assert train == tool_tasks(40, seed=3, split="train")
    assert not {e.uid for e in train} & {e.uid for e in held}
    assert all(split_of(e.uid) == "train" for e in train) and all(split_of(e.uid) == "heldout" for e in held)
    assert {e.meta["tool"] for e in held} == {"calculator", "convert"}
    for example in train + held:
        run = calculate if example.meta["tool"] == "calculator" else convert
        assert example.answer == " " + run(example.meta["args"]) == " " + example.meta["result"]
        (parsed,) = parse_calls(tool_solution(example))
        assert execute(parsed).value == example.meta["result"]
        assert example.prompt.endswith("Answer:")


def _operand_widths(example) -> list[int]:
    return [len(term) for term in example.meta["args"].split() if term.isdigit()]


def test_mixed_widths_pair_shorter_operands_and_stay_verifiable() -> None:
    equal = [e for e in tool_tasks(80, seed=5) if e.meta["tool"] == "calculator"]
    mixed = [e for e in tool_tasks(80, seed=5, mixed_widths=True) if e.meta["tool"] == "calculator"]
    assert all(len(set(_operand_widths(e))) == 1 for e in equal)  # the training mix: equal widths only
    shorter = [e for e in mixed if len(set(_operand_widths(e))) > 1]
    assert shorter and len(shorter) < len(mixed)
    for example in mixed:
        first, *rest = _operand_widths(example)
        assert all(first - 1 <= width <= first for width in rest)
        assert example.answer == " " + calculate(example.meta["args"])


def test_tool_tasks_of_one_tool_only() -> None:
    """``tools`` picks which tools take turns; the default alternates both, as before."""
    only = tool_tasks(30, seed=6, tools=("calculator",))
    assert len(only) == 30 and {e.meta["tool"] for e in only} == {"calculator"}
    assert all(e.answer == " " + calculate(e.meta["args"]) for e in only)
    both = tool_tasks(30, seed=6)
    assert [e.meta["tool"] for e in both[:4]] == ["calculator", "convert", "calculator", "convert"]
    for bad in ((), ("abacus",)):
        with pytest.raises(ValueError, match="tools must name"):
            tool_tasks(4, seed=6, tools=bad)
