"""Reasoning data: seven strategies, true content, verifiable answers, the layout, held-out disjointness."""

from __future__ import annotations

from collections import Counter

import pytest
from reasoning_builders import reasoning_tokenizer

from agent_forge.data.sandbox import check_code_answers
from agent_forge.data.tasks import mix_tasks, split_of
from agent_forge.data.tokenizer import EOS_ID, SPECIAL_TOKENS
from agent_forge.reasoning.columns import column_equation
from agent_forge.reasoning.consistency import logical_consistency
from agent_forge.reasoning.data import (
    build_reasoning_examples,
    encode_reasoning,
    reasoning_dataset,
    select_examples,
    split_prompt,
)
from agent_forge.reasoning.evidence import inverse_check, task_evidence
from agent_forge.reasoning.strategies import STRATEGIES, opening_phrases


def test_every_strategy_has_a_reserved_token_and_shipped_phrases():
    assert len(STRATEGIES) == 7
    for item in STRATEGIES:
        assert item.token in SPECIAL_TOKENS
        assert opening_phrases(item.name)


def test_the_seven_strategies_are_equally_present_and_open_their_thought():
    examples = reasoning_dataset(140, seed=1)
    counts = Counter(e.strategy for e in examples)
    assert len(counts) == 7 and set(counts.values()) == {20}
    for example in examples:
        token = next(s.token for s in STRATEGIES if s.name == example.strategy)
        assert example.thought.startswith(token)
        assert "<think>" + example.thought + "</think>" in example.text


def test_text_is_body_think_cue_answer_eos_and_body_plus_cue_is_the_prompt():
    for example in reasoning_dataset(60, seed=2):
        body, cue = split_prompt(example.task)
        assert body + cue == example.task.prompt
        assert example.text.endswith("</think>" + cue + example.task.answer + "<eos>")
        assert example.text.startswith(body + "<think>")
    code = next(e for e in reasoning_dataset(60, seed=2) if e.task.kind == "code")
    assert code.cue == code.task.meta["code_prefix"]


def test_every_claim_of_every_built_thought_holds_for_its_task():
    examples = reasoning_dataset(210, seed=3)
    assert all(logical_consistency(e.thought, e.task) == 1.0 for e in examples)


def test_answers_are_verifiable_from_the_task_data():
    examples = reasoning_dataset(105, seed=4)
    for e in (x for x in examples if x.task.kind == "arith"):
        assert e.task.meta["steps"][-1].endswith(f"= {e.task.answer.strip()}")
        assert f"{e.task.answer.strip()}" in e.thought
    for e in (x for x in examples if x.task.kind == "mc"):
        assert e.task.answer.strip() == "ABCD"[e.task.meta["answer_index"]]
    code = [x for x in examples if x.task.kind == "code"][:6]
    assert all(check_code_answers([e.task for e in code], [e.task.answer for e in code]))


def test_arithmetic_thoughts_carry_the_tasks_own_steps():
    task = next(t for t in mix_tasks(30, 5, kinds=("arith",), levels=(3,)) if len(t.meta["steps"]) >= 2)
    evidence = task_evidence(task)
    assert [column_equation(step) for step in evidence.steps] == task.meta["steps"]  # worked, the same steps
    assert any(":" in step for step in evidence.steps)  # at level 3 some step has a two-digit operand
    assert inverse_check("46 + 34 = 80") == "80 - 34 = 46"
    assert inverse_check("12 / 4 = 3") == "3 * 4 = 12"


def test_reasoning_data_comes_from_the_training_split_only():
    train = reasoning_dataset(300, seed=6)
    heldout = mix_tasks(100, 6, split="heldout")
    assert all(split_of(e.task.uid) == "train" for e in train)
    assert not {e.task.uid for e in train} & {t.uid for t in heldout}


def test_examples_without_verification_data_are_skipped():
    tasks = mix_tasks(10, 7)
    stripped = [type(t)(t.uid, t.kind, t.level, t.prompt, t.answer, {}) for t in tasks]
    assert build_reasoning_examples(stripped, 0) == []


def test_encoding_marks_the_body_and_the_answer():
    tokenizer = reasoning_tokenizer()
    examples = reasoning_dataset(14, seed=8)
    for example, encoded in zip(examples, encode_reasoning(tokenizer, examples), strict=True):
        assert encoded.tokens[-1] == EOS_ID
        assert encoded.tokens[encoded.body_len] == tokenizer.special_id("<think>")
        answer = tokenizer.decode(encoded.tokens[encoded.answer_start : -1])
        assert answer == example.task.answer


@pytest.mark.parametrize("seq_len", [40, 400])
def test_select_prefers_examples_that_fit_a_row(seq_len):
    examples = reasoning_dataset(28, seed=9)
    pairs = list(zip(examples, encode_reasoning(reasoning_tokenizer(), examples), strict=True))
    chosen = select_examples(pairs, 20, seq_len)
    lengths = [len(e.tokens) for _, e in chosen]
    fitting = sum(n <= seq_len for n in lengths)
    assert len(chosen) == 20
    assert all(n <= seq_len for n in lengths[:fitting]) and lengths[fitting:] == sorted(lengths[fitting:])
