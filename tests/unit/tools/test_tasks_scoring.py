"""Tool-use tasks: verifiable, reproducible, split by hash."""

from __future__ import annotations

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
