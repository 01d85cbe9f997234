"""Think mode: the model chooses to think, its thought is read to the answer, corrupted digits are scored."""

from __future__ import annotations

import random

import pytest
from reasoning_builders import model_taught, reasoning_tokenizer, smoke_model

from agent_forge.data.dataset import IGNORE_LABEL, encode_examples
from agent_forge.data.tasks import generate_tasks
from agent_forge.reasoning.data import encode_reasoning, reasoning_dataset, thinks_in_training, training_rows
from agent_forge.reasoning.think_mode import (
    ThinkModeResult,
    corrupt_digits,
    digit_ids,
    evaluate_think_mode,
    generate_thinking,
    think_mode_figures,
    think_report,
)
from agent_forge.reasoning.thoughts import THINK_ID


def test_thought_share_picks_that_share_of_a_kind_and_no_other():
    tasks = generate_tasks("arith", 2, 400, seed=3) + generate_tasks("mc", 1, 200, seed=3)
    picked = [t for t in tasks if thinks_in_training(t, {"arith": 0.5})]
    assert all(t.kind == "arith" for t in picked)
    assert 150 <= len(picked) <= 250  # a hash share: about half of 400
    assert not any(thinks_in_training(t, {"arith": 0.0}) for t in tasks)
    assert all(thinks_in_training(t, {"arith": 1.0}) for t in tasks if t.kind == "arith")


def test_training_rows_write_thoughts_for_the_share_and_score_them_as_answer():
    tokenizer = reasoning_tokenizer()
    tasks = generate_tasks("arith", 1, 40, seed=5) + generate_tasks("code", 1, 10, seed=5)
    ids, labels = training_rows(tokenizer, tasks, {"arith": 1.0}, prompt_share=0.0, seed=1)
    plain = encode_examples(tokenizer, tasks)
    for task, row, label, flat in zip(tasks, ids, labels, plain, strict=True):
        assert len(row) == len(label)
        if task.kind == "code":
            assert row == flat  # no thought share for code: the plain example
            continue
        start = row.index(THINK_ID)
        assert all(x == IGNORE_LABEL for x in label[:start]) and label[start:] == row[start:]
    assert encode_reasoning(tokenizer, []) == []


def test_corrupted_digits_differ_everywhere_else_equal():
    tokenizer = reasoning_tokenizer()
    digits = digit_ids(tokenizer)
    thought = tokenizer.encode("12 + 30 = 42")
    broken = corrupt_digits(thought, digits, random.Random(0))
    assert len(broken) == len(thought)
    for a, b in zip(thought, broken, strict=True):
        assert (a != b) if a in digits else (a == b)


def test_think_mode_of_an_untrained_model_keeps_its_direct_results():
    tokenizer = reasoning_tokenizer()
    tasks = [e.task for e in reasoning_dataset(8, seed=40)]
    direct = [i % 2 == 0 for i in range(8)]
    result = evaluate_think_mode(smoke_model(7), tokenizer, tasks, direct, max_tokens=8, batch_size=3)
    for i, opened in enumerate(result.opened):
        if not opened:
            assert result.correct[i] == direct[i] and result.thought_tokens[i] == 0
    figures = think_mode_figures(tasks, result)
    assert 0.0 <= figures["validity_rate"] <= figures["think_rate"] <= 1.0


def test_the_figures_count_thoughts_that_call_a_tool_among_the_thoughts_only():
    tasks = generate_tasks("arith", 1, 4, seed=5)
    thoughts = ["<tool>calculator</tool><args>3 + 4</args> 7", "3 + 4 = 7", "", "<tool>convert</tool>"]
    result = ThinkModeResult(opened=[True, True, False, True], closed=[True] * 4, correct=[False] * 4,
                             corrupted_correct=[False] * 4, thought_tokens=[5, 4, 0, 2], thoughts=thoughts)
    figures = think_mode_figures(tasks, result)
    assert figures["tool_call_rate"] == 2 / 3 and figures["think_rate"] == 3 / 4


@pytest.fixture(scope="module")
def thinker():
    """A smoke model trained to write the thoughts of four arithmetic tasks, and those examples."""
    examples = reasoning_dataset(200, seed=31, kinds=("arith",), levels=(1,))[:4]
    return model_taught(examples, steps=40), reasoning_tokenizer(), examples


def test_a_model_that_learned_to_think_thinks_by_itself_and_uses_its_thoughts(thinker):
    model, tokenizer, examples = thinker
    report = think_report(model, tokenizer, [e.task for e in examples], seq_len=128, max_tokens=40)
    figures = report["thinking"]["overall"]
    assert figures["think_rate"] == 1.0 and figures["validity_rate"] == 1.0
    assert report["overall"]["accuracy"] == 1.0 and figures["own_thought_accuracy"] == 1.0
    assert report["samples"] == [e.thought for e in examples] and report["direct"]["overall"]["n"] == 4


def test_generation_in_think_mode_shows_the_thought_then_the_answer(thinker):
    model, tokenizer, examples = thinker
    for example in examples[:2]:
        result = generate_thinking(model, tokenizer, example.task.prompt, max_new_tokens=48)
        assert result.thought == example.thought and result.closed and result.ended
        assert result.answer == example.task.answer


def test_reading_a_thought_after_a_short_preamble():
    from agent_forge.reasoning.think_mode import PREAMBLE_TOKENS, read_thinking, think_prompt

    tokenizer = reasoning_tokenizer()
    ready = think_prompt(tokenizer, "Tom has 3 apples. How many apples does Tom have?\nAnswer:")
    greeting = tokenizer.encode(" so")  # a short preamble, as a persona's greeting
    thought = tokenizer.encode("<think><step>3 + 0 = 3</think>")
    generated = [*greeting, *thought, *ready.cue_ids, *tokenizer.encode(" 3"), 2]
    result = read_thinking(tokenizer, ready, generated, ended=True)
    assert result.thought == "<step>3 + 0 = 3" and result.closed and result.answer == " 3"
    late = [*tokenizer.encode(" word" * (PREAMBLE_TOKENS + 1)), *thought]  # a thought too late is no thought
    assert read_thinking(tokenizer, ready, late, ended=False).thought == ""


def test_a_model_that_thinks_in_calls_reasons_in_think_mode_and_calls_in_tools_mode():
    """Taught a body's thought as a call (twice) and as a reasoning thought (once), the model opens a call;
    think mode's grammar (a strategy marker first) gets its reasoning thought, tools mode keeps the call."""
    import dataclasses

    tokenizer = reasoning_tokenizer()
    example = reasoning_dataset(200, seed=31, kinds=("arith",), levels=(1,))[0]
    steps = example.task.meta["steps"][0]  # "a + b = c": the call's arguments and result
    call = f"<tool>calculator</tool><args>{steps.split(' = ')[0]}</args><result>{example.task.answer}</result>"
    calling = dataclasses.replace(example, thought=call)
    model = model_taught([calling, calling, example], steps=60)
    tasks, direct = [example.task], [False]
    think = evaluate_think_mode(model, tokenizer, tasks, direct, max_tokens=40)
    tools = evaluate_think_mode(model, tokenizer, tasks, direct, max_tokens=40, tools=True)
    assert tools.thoughts[0].startswith("<tool>calculator</tool>")
    assert think.thoughts == [example.thought] and think.correct == [True]
    assert think_mode_figures(tasks, think)["tool_call_rate"] == 0.0
