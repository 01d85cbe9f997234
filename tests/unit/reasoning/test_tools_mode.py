"""Tools mode and the training rows behind it: prompted demonstrations, the persona's greeting, real calls."""

from __future__ import annotations

import pytest
from reasoning_builders import model_fit, reasoning_tokenizer, smoke_model

from agent_forge.data.dataset import IGNORE_LABEL
from agent_forge.data.tasks import generate_tasks
from agent_forge.reasoning.data import TrainingStyle, training_rows
from agent_forge.reasoning.think_mode import ThinkModeResult, generate_thinking
from agent_forge.reasoning.tools_mode import (
    call_scores,
    reference_row,
    references_written,
    tool_figures,
    tools_report,
)
from agent_forge.tools.calls import ToolCall
from agent_forge.tools.demos import calls_with_results, task_calls
from agent_forge.tools.tasks import make_tool_example

TOOLS = "Tools: <tool>calculator</tool><args>1 + 1</args>."
STYLE = TrainingStyle(thought_share={}, tool_prompt=TOOLS, persona_prompt="<persona>I am Nova.</persona>",
                      persona_greeting=" Nova here.", persona_share=1.0)


def _demos(tasks):
    return [(t, calls_with_results(task_calls(t))) for t in tasks]


def test_a_demonstration_reads_the_prompt_and_scores_calls_but_never_prompts_or_results():
    tokenizer = reasoning_tokenizer()
    task = generate_tasks("arith", 2, 1, seed=4)[0]
    ids, labels = training_rows(tokenizer, [], TrainingStyle(tool_prompt=TOOLS), 0.0, 1, _demos([task]))
    text = tokenizer.decode(ids[0])
    assert text.startswith("<bos>" + TOOLS) and "<think><tool>calculator</tool><args>" in text
    assert text.endswith("</think>\nAnswer:" + task.answer + "<eos>") or text.endswith(
        "</think> Answer:" + task.answer + "<eos>")
    scored = tokenizer.decode([t for t, label in zip(ids[0], labels[0], strict=True) if label != IGNORE_LABEL])
    assert scored.startswith("<think><tool>") and "<result>" not in scored and TOOLS not in scored
    assert len(ids[0]) == len(labels[0])


def test_the_persona_share_adds_its_prompt_and_greeting_and_leaves_the_answer():
    tokenizer = reasoning_tokenizer()
    task = generate_tasks("mc", 1, 1, seed=4)[0]
    ids, labels = training_rows(tokenizer, [task], STYLE, 0.0, 1)
    text = tokenizer.decode(ids[0])
    assert text.startswith("<bos><persona>I am Nova.</persona>") and " Nova here.\nAnswer:" in text
    assert text.endswith(task.answer + "<eos>")
    scored = tokenizer.decode([t for t, label in zip(ids[0], labels[0], strict=True) if label != IGNORE_LABEL])
    assert scored.startswith(" Nova here.")


def test_call_scores_read_calls_and_results_of_a_thought():
    good = "<tool>calculator</tool><args>2 + 3</args><result>5</result>"
    assert call_scores(good, "5") == (True, True, True)
    assert call_scores(good + "<tool>nope</tool><args>1</args>", "5") == (True, False, True)
    assert call_scores("<step>2 + 3 = 5", "5") == (False, False, False)
    tasks = generate_tasks("arith", 1, 2, seed=1)
    result = ThinkModeResult(thoughts=[good, ""], correct=[True, False])
    figures = tool_figures(tasks, result)
    assert figures["call_rate"]["n"] == 2 and figures["call_rate"]["accuracy"] == 0.5
    assert figures["accuracy"]["correct"] == 1 and figures["accuracy"]["ci_low"] < 0.5


@pytest.fixture(scope="module")
def tool_user():
    """A smoke model taught to answer four prompted tasks through calls; among them one no model computes."""
    tokenizer = reasoning_tokenizer()
    bare = make_tool_example("What is 347 * 29? Answer:", ToolCall("calculator", "347 * 29"), 2)
    tasks = [*generate_tasks("arith", 2, 3, seed=12), bare]
    ids, labels = training_rows(tokenizer, [], TrainingStyle(tool_prompt=TOOLS), 0.0, 1, _demos(tasks))
    return model_fit(ids, labels, steps=60), tokenizer, tasks


def test_a_prompted_tool_user_calls_gets_real_results_and_answers(tool_user):
    model, tokenizer, tasks = tool_user
    report = tools_report(model, tokenizer, tasks, seq_len=128, max_tokens=60, prefix=tokenizer.encode(TOOLS))
    figures = report["tools"]["overall"]
    assert figures["call_rate"]["accuracy"] == 1.0 and figures["well_formed_rate"]["accuracy"] == 1.0
    assert figures["result_correct_rate"]["accuracy"] == 1.0
    assert report["overall"]["accuracy"] == 1.0 and report["direct"]["overall"]["accuracy"] < 1.0
    assert any("<result>10063</result>" in sample for sample in report["samples"])
    corrupted = report["corrupted_results"]["overall"]["accuracy"]
    assert corrupted < report["overall"]["accuracy"]  # the answer reads the tool's result


def test_an_untrained_model_in_tools_mode_keeps_its_direct_results():
    tokenizer = reasoning_tokenizer()
    tasks = generate_tasks("arith", 1, 6, seed=3)
    report = tools_report(smoke_model(5), tokenizer, tasks, seq_len=128, max_tokens=8)
    assert report["n"] == 6 and 0.0 <= report["tools"]["overall"]["call_rate"]["accuracy"] <= 1.0


def test_a_reference_row_is_the_bare_task_as_tools_mode_runs_it_with_the_written_tokens_marked():
    tokenizer = reasoning_tokenizer()
    task = make_tool_example("What is 347 * 29? Answer:", ToolCall("calculator", "347 * 29"), 2)
    ids, written = reference_row(tokenizer, task)
    assert tokenizer.decode(ids) == ("<bos>What is 347 * 29?<think><tool>calculator</tool><args>347 * 29</args>"
                                     "<result>10063</result></think> Answer: 10063<eos>")
    writes = tokenizer.decode([t for t, w in zip(ids, written, strict=True) if w])
    assert writes == "<tool>calculator</tool><args>347 * 29</args></think> 10063<eos>"  # not the body, result, cue


@pytest.fixture(scope="module")
def reference_writer():
    """A smoke model taught the unprompted reference rows of three bare calculations (not a fourth)."""
    tokenizer = reasoning_tokenizer()
    tasks = [make_tool_example(f"What is {e}? Answer:", ToolCall("calculator", e), 2)
             for e in ("347 * 29", "81 + 7", "605 - 44", "12 * 12")]
    rows = [reference_row(tokenizer, t) for t in tasks]
    starts = [written.index(True) - 1 for _, written in rows]  # `<think>` is read in the row; taught here too
    labels = [[t if i >= start else IGNORE_LABEL for i, t in enumerate(ids)]
              for (ids, _), start in zip(rows, starts, strict=True)]
    return model_fit([ids for ids, _ in rows[:3]], labels[:3], steps=60), tokenizer, tasks, rows


def test_references_written_says_whether_tools_mode_writes_the_call_and_the_answer(reference_writer):
    model, tokenizer, tasks, rows = reference_writer
    written = references_written(model, rows)
    assert written[:3] == [True, True, True]
    for task, ok in zip(tasks, written, strict=True):
        generated = generate_thinking(model, tokenizer, task.prompt, 48, tools=True)
        wrote = f"<args>{task.meta['args']}</args>" in generated.thought and generated.answer == task.answer
        assert wrote == ok, (task.prompt, generated)


def test_tools_mode_reports_bare_tool_tasks_per_tool_and_nothing_for_word_problems(reference_writer):
    model, tokenizer, tasks, _ = reference_writer
    conversion = make_tool_example("How many m are in 3 km? Answer:", ToolCall("convert", "3 km to m"), 1)
    words = generate_tasks("arith", 1, 2, seed=4)
    report = tools_report(model, tokenizer, [*tasks, conversion, *words], seq_len=128, max_tokens=48)
    by_tool = {name: figures["accuracy"] for name, figures in report["by_tool"].items()}
    assert set(by_tool) == {"calculator", "convert"}
    assert by_tool["calculator"]["n"] == 4 and by_tool["convert"]["n"] == 1
    assert by_tool["calculator"]["correct"] >= 3  # the three calculations it was taught
    assert by_tool["calculator"]["correct"] + by_tool["convert"]["correct"] == report["kinds"]["tool"]["correct"]
    assert tools_report(model, tokenizer, words, seq_len=128, max_tokens=48)["by_tool"] == {}
