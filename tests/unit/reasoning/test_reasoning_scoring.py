"""Validity parsing, the consistency/relevance checks, fluency and the coherence weights."""

from __future__ import annotations

import math

import pytest
from reasoning_builders import reasoning_tokenizer

from agent_forge.data.tasks import mix_tasks
from agent_forge.data.tokenizer import EOS_ID
from agent_forge.reasoning.consistency import logical_consistency, relevance
from agent_forge.reasoning.data import reasoning_dataset
from agent_forge.reasoning.scoring import (
    Coherence,
    answer_format_ok,
    fluency,
    is_degenerate,
    parse_thinking,
)
from agent_forge.reasoning.thoughts import END_THINK_ID


def arith_example():
    return next(e for e in reasoning_dataset(40, seed=21) if e.task.kind == "arith" and e.cue)


def generated(tokenizer, thought: str, after: str, eos: bool = True) -> list[int]:
    ids = [*tokenizer.encode(thought), END_THINK_ID, *tokenizer.encode(after)]
    return ids + [EOS_ID] * eos


def test_a_well_formed_thought_with_cue_and_answer_is_valid():
    tokenizer, example = reasoning_tokenizer(), arith_example()
    ids = generated(tokenizer, example.thought, example.cue + example.task.answer)
    parsed = parse_thinking(tokenizer, ids, example.cue, "arith", END_THINK_ID)
    assert parsed.valid and parsed.answer_text == example.task.answer
    assert tokenizer.decode(parsed.thought_ids) == example.thought


@pytest.mark.parametrize("layout", ["\nAnswer:", " Answer:", "Answer:"])
def test_the_cue_may_follow_the_thought_in_either_layout(layout):
    tokenizer, example = reasoning_tokenizer(), arith_example()
    ids = generated(tokenizer, example.thought, layout + example.task.answer)
    parsed = parse_thinking(tokenizer, ids, example.cue, "arith", END_THINK_ID)
    assert example.cue.strip() == "Answer:" and parsed.valid and parsed.answer_text == example.task.answer


@pytest.mark.parametrize("case", ["no_close", "wrong_cue", "bad_format", "no_eos", "empty_thought", "degenerate"])
def test_each_defect_makes_the_continuation_invalid(case):
    tokenizer, example = reasoning_tokenizer(), arith_example()
    thought, after, eos = example.thought, example.cue + example.task.answer, True
    if case == "wrong_cue":
        after = " So:" + example.task.answer
    elif case == "bad_format":
        after = example.cue + " twelve"
    elif case == "no_eos":
        eos = False
    elif case == "empty_thought":
        thought = ""
    elif case == "degenerate":
        thought = "7" * 12
    ids = generated(tokenizer, thought, after, eos)
    if case == "no_close":
        ids = [*tokenizer.encode(thought + after), EOS_ID]
    assert not parse_thinking(tokenizer, ids, example.cue, "arith", END_THINK_ID).valid


def test_answer_formats_per_kind():
    assert answer_format_ok("arith", " 42") and not answer_format_ok("arith", " 4 2")
    assert answer_format_ok("mc", " C") and not answer_format_ok("mc", " CC")
    assert answer_format_ok("code", " x + 3") and not answer_format_ok("code", " <think>")


def test_degenerate_means_one_token_dominates():
    assert is_degenerate([5, 5, 5, 5, 9]) and not is_degenerate([5, 6, 7, 8, 5])


def test_consistency_counts_the_claims_that_hold():
    task = next(t for t in mix_tasks(40, 22, kinds=("arith",), levels=(2,)))
    steps = task.meta["steps"]
    right = "<expert> x:" + "".join(f"<step>{s}" for s in steps) + f"<step>so {task.meta['result']}"
    assert logical_consistency(right, task) == 1.0
    wrong_sum = right.replace(steps[0], steps[0].rsplit("=", 1)[0] + "= 1")
    assert logical_consistency(wrong_sum, task) < 1.0
    ungrounded = "<expert> x:<step>1000 + 1000 = 2000"
    assert logical_consistency(ungrounded, task) == 0.0
    assert logical_consistency("<mece> nothing checkable here", task) == 0.0


def test_option_verdicts_and_conclusions_are_checked_against_the_answer():
    task = next(t for t in mix_tasks(30, 23, kinds=("mc",), levels=(2,)))
    right, wrong = task.answer.strip(), "A" if task.answer.strip() != "A" else "B"
    assert logical_consistency(f"<step>{right} x yes<step>so {right}", task) == 1.0
    assert logical_consistency(f"<step>{wrong} x yes<step>so {wrong}", task) == 0.0
    assert logical_consistency(f"<step>{right}, not {wrong}<step>not {wrong}", task) == 1.0


def test_relevance_is_the_share_of_task_words():
    task = next(t for t in mix_tasks(30, 24, kinds=("arith",), levels=(1,)))
    first_word = task.prompt.split()[0]
    assert relevance(f"<mece> {first_word} {task.meta['result']}", task) == 1.0
    assert relevance("<mece> zebra xylophone", task) == 0.0


def test_fluency_is_the_geometric_mean_token_probability():
    assert fluency([math.log(0.5), math.log(0.5)]) == pytest.approx(0.5)
    assert fluency([]) == 0.0


def test_coherence_uses_the_spec_weights_and_clips_each_part():
    assert Coherence(1.0, 1.0, 1.0, 1.0).score == pytest.approx(1.0)
    assert Coherence(1.0, 0.0, 0.0, 0.0).score == pytest.approx(0.30)
    assert Coherence(0.0, 0.0, 1.0, 0.0).score == pytest.approx(0.25)
    assert Coherence(-0.5, 0.0, 0.0, 2.0).score == pytest.approx(0.15)
