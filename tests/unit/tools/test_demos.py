"""Tool demonstrations: a story's steps become calls on the running total, with results the tools compute."""

from __future__ import annotations

import pytest

from agent_forge.data.tasks import generate_tasks
from agent_forge.tools.calls import RESULT_CLOSE, RESULT_OPEN, ToolCall
from agent_forge.tools.demos import arithmetic_calls, calls_with_results, demo_tasks, task_calls
from agent_forge.tools.tasks import TOOL_KIND


def test_each_step_is_one_call_on_the_running_total():
    calls = arithmetic_calls(["12 + 5 = 17", "17 * 3 = 51", "51 / 3 = 17"], start=12)
    assert [c.args for c in calls] == ["12 + 5", "17 * 3", "51 / 3"]
    assert all(c.name == "calculator" for c in calls)


def test_a_product_added_at_once_is_fused_into_the_call_that_adds_it():
    # "4 boxes of 10" while the total is 4: the product must not be read as a step on the total
    calls = arithmetic_calls(["92 - 84 = 8", "8 / 2 = 4", "4 * 10 = 40", "4 + 40 = 44"], start=92)
    assert [c.args for c in calls] == ["92 - 84", "8 / 2", "4 + 4 * 10"]


def test_steps_that_do_not_follow_the_total_are_refused():
    with pytest.raises(ValueError, match="running total"):
        arithmetic_calls(["3 + 4 = 7", "9 - 2 = 7"], start=3)
    with pytest.raises(ValueError, match="equation"):
        arithmetic_calls(["three plus four"], start=3)


def test_the_last_result_of_every_generated_problem_is_its_answer():
    tasks = [t for level in (1, 2, 3, 4, 5) for t in generate_tasks("arith", level, 60, seed=8)]
    for task in tasks:
        pieces = calls_with_results(task_calls(task))
        assert pieces and pieces[-1][1] == f"{RESULT_OPEN}{task.answer.strip()}{RESULT_CLOSE}"


def test_demo_tasks_mix_word_problems_of_every_level_and_bare_tool_tasks():
    tasks = demo_tasks(80, seed=2, tool_task_share=0.25)
    bare = [t for t in tasks if t.kind == TOOL_KIND]
    assert len(tasks) == 80 and len(bare) == 20
    assert {t.level for t in tasks if t.kind == "arith"} == {1, 2, 3, 4, 5}
    assert task_calls(bare[0]) == [ToolCall(bare[0].meta["tool"], bare[0].meta["args"])]
    assert task_calls(generate_tasks("mc", 1, 1, seed=1)[0]) == []
