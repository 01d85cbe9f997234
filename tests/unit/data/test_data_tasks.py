"""The built-in task generator: determinism, the hash split, verifiable answers, variety and speed."""

from __future__ import annotations

import operator
import random
import re
from collections import Counter

import pytest

from agent_forge.data.sandbox import check_code_answers
from agent_forge.data.tasks import (
    HELDOUT_SHARE,
    SELECTION_SHARE,
    TASK_KINDS,
    TaskExample,
    apportion,
    generate_tasks,
    make_example,
    make_uid,
    mix_tasks,
    split_of,
    training_text,
)

LEVELS = (1, 2, 3, 4, 5)
_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.floordiv}


def test_same_seed_same_examples_other_seed_other_examples():
    first = generate_tasks("arith", 3, 50, seed=7)
    assert first == generate_tasks("arith", 3, 50, seed=7)
    assert [e.meta for e in first] == [e.meta for e in generate_tasks("arith", 3, 50, seed=7)]
    assert {e.uid for e in first}.isdisjoint({e.uid for e in generate_tasks("arith", 3, 50, seed=8)})


def test_uid_is_sha1_of_the_question_identity():
    example = generate_tasks("mc", 2, 1, seed=0)[0]
    import hashlib

    meta = example.meta
    identity = "\x1f".join(["mc", meta["question"], meta["choices"][meta["answer_index"]], *sorted(meta["choices"])])
    expected = hashlib.sha1(identity.encode()).hexdigest()[:16]
    assert example.uid == expected == make_uid("mc", example.prompt, example.answer, meta)


def test_train_and_heldout_are_disjoint_and_follow_the_hash():
    train = mix_tasks(6000, seed=0, split="train")
    heldout = mix_tasks(600, seed=0, split="heldout")
    assert {e.uid for e in train}.isdisjoint({e.uid for e in heldout})
    assert {split_of(e.uid) for e in train} == {"train"}
    assert {split_of(e.uid) for e in heldout} == {"heldout"}
    assert len({e.uid for e in heldout}) == len(heldout)  # held-out examples are unique


def test_hash_split_reserves_about_the_configured_share():
    uids = [make_uid("text", f"line {i}", "") for i in range(20000)]
    share = sum(split_of(u) == "heldout" for u in uids) / len(uids)
    assert abs(share - HELDOUT_SHARE) < 0.01


@pytest.mark.parametrize("kind", TASK_KINDS)
@pytest.mark.parametrize("level", LEVELS)
def test_examples_follow_the_contract(kind, level):
    for example in generate_tasks(kind, level, 40, seed=level):
        assert isinstance(example, TaskExample) and example.kind == kind and example.level == level
        assert example.answer.startswith((" ", "\n")) and example.answer.strip()
        assert example.prompt.endswith("Answer:" if kind != "code" else "return")
        assert training_text(example) == example.prompt + example.answer + "<eos>"
        assert example.meta["source"] == "builtin"


def _check_equation(step: str) -> tuple[int, int]:
    left, symbol, right, equals, result = step.split()
    assert equals == "="
    assert _OPS[symbol](int(left), int(right)) == int(result), step
    if symbol == "/":
        assert int(left) % int(right) == 0, step
    return int(left), int(result)


@pytest.mark.parametrize("level", [*LEVELS, 7])
def test_arith_steps_chain_to_the_answer(level):
    for example in generate_tasks("arith", level, 60, seed=1):
        steps = example.meta["steps"]
        for step in steps:
            _check_equation(step)
        assert int(steps[-1].split()[-1]) == int(example.answer) == example.meta["result"]
        assert int(example.answer) >= 0
        for number in [*example.meta["operands"], *example.meta["distractor_numbers"]]:
            assert re.search(rf"\b{number}\b", example.prompt), (number, example.prompt)


def test_arith_difficulty_grows_with_level():
    def mean(level, measure):
        examples = generate_tasks("arith", level, 200, seed=2)
        return sum(measure(e) for e in examples) / len(examples)

    steps = [mean(lv, lambda e: len(e.meta["steps"])) for lv in LEVELS]
    digits = [mean(lv, lambda e: len(str(e.meta["operands"][0]))) for lv in LEVELS]
    distractors = [mean(lv, lambda e: len(e.meta["distractor_numbers"])) for lv in LEVELS]
    assert steps == sorted(steps) and steps[0] == 1 and steps[-1] > 3
    assert digits[0] == 1 and digits[-1] > 2
    assert distractors[0] == 0 and distractors[-1] >= 2
    level1 = generate_tasks("arith", 1, 200, seed=2)
    assert all(max(e.meta["operands"]) <= 9 for e in level1)
    assert {s.split()[1] for e in level1 for s in e.meta["steps"]} == {"+", "-"}


def _choice_values(example: TaskExample) -> list[int]:
    return [eval(choice, {"__builtins__": {}}) for choice in example.meta["choices"]]  # digits and * + only


@pytest.mark.parametrize("level", LEVELS)
def test_mc_answer_letter_points_at_the_right_choice(level):
    for example in generate_tasks("mc", level, 80, seed=3):
        meta = example.meta
        assert len(meta["choices"]) == min(4, level + 1) == len(set(meta["choices"]))
        assert example.answer == " " + "ABCD"[meta["answer_index"]]
        for label, choice in zip(meta["labels"], meta["choices"], strict=True):
            assert label in example.prompt and choice in example.prompt
        question = meta["question"]
        if meta["family"] in ("numbers", "expressions"):
            values = _choice_values(example)
            best = min(values) if re.search("smallest|least|lowest", question) else max(values)
            assert values[meta["answer_index"]] == best and values.count(best) == 1
        if meta["family"] == "multiples":
            k = int(re.search(r"(\d+)", question).group(1))
            assert [int(c) % k == 0 for c in meta["choices"]].count(True) == 1
            assert int(meta["choices"][meta["answer_index"]]) % k == 0


@pytest.mark.parametrize("level", LEVELS)
def test_code_reference_answers_pass_their_tests_and_wrong_ones_fail(level):
    examples = generate_tasks("code", level, 60, seed=4)
    assert all(len(e.meta["tests"]) >= 2 for e in examples)
    assert all(check_code_answers(examples, [e.answer for e in examples]))
    assert not any(check_code_answers(examples, [" None" for _ in examples]))


def _skeleton(text: str) -> str:
    """The surface template: numbers and capitalised words (names) blanked out."""
    return re.sub(r"\b[A-Z][a-z]+\b|\d+", "_", text)


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_many_surface_templates_per_kind(kind):
    examples = mix_tasks(600, seed=5, kinds=[kind])
    first_lines = {_skeleton(e.prompt.split("\n")[0].split(". ")[0]) for e in examples}
    assert len(first_lines) >= 25, sorted(first_lines)[:10]
    # multiple choice has fewer distinct questions: option order and layout no longer make a new one
    assert len({e.uid for e in examples}) > (0.9 if kind == "mc" else 0.95) * len(examples)


def test_mix_respects_kind_weights_levels_and_size():
    examples = mix_tasks(1000, seed=6, kinds=["arith", "code"], levels=[1, 2], kind_weights={"arith": 3.0})
    counts = Counter(e.kind for e in examples)
    assert len(examples) == 1000 and counts == {"arith": 750, "code": 250}
    assert {e.level for e in examples} == {1, 2}
    assert [e.kind for e in examples[:20]] != sorted(e.kind for e in examples[:20])  # shuffled


def test_apportion_is_exact_and_proportional():
    assert apportion(10, {"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 4, "b": 3, "c": 3}
    assert sum(apportion(997, {i: float(i + 1) for i in range(7)}).values()) == 997
    with pytest.raises(ValueError):
        apportion(5, {"a": 0.0})


def test_unknown_kind_or_split_is_refused():
    with pytest.raises(ValueError, match="unknown task kind"):
        generate_tasks("poetry", 1, 1, seed=0)
    with pytest.raises(ValueError, match="split"):
        generate_tasks("arith", 1, 1, seed=0, split="test")


def test_round_trip_through_dict():
    example = generate_tasks("code", 2, 1, seed=0)[0]
    assert TaskExample.from_dict(example.to_dict()) == example




def test_a_multiple_choice_question_keeps_its_uid_in_any_option_order_or_layout():
    from agent_forge.data.task_mc import _layout

    meta = {"question": "Which one is a fruit?", "choices": ["apple", "chair", "road"], "answer_index": 0}
    reordered = {"question": meta["question"], "choices": ["road", "apple", "chair"], "answer_index": 1}
    first = make_example("mc", 2, _layout(random.Random(0), meta["question"], meta["choices"]), " A", meta)
    second = make_example("mc", 2, _layout(random.Random(5), reordered["question"], reordered["choices"]), " B",
                          reordered)
    assert first.prompt != second.prompt and first.uid == second.uid


def test_an_arithmetic_story_keeps_its_uid_whatever_its_answer_cue():
    story = "Ann has 3 pens. She finds 4 more pens. How many pens does Ann have now?"
    assert make_example("arith", 1, story + "\nAnswer:", " 7", {}).uid == make_example(
        "arith", 1, story + " Answer:", " 7", {}).uid
    assert make_example("arith", 1, story + " Answer:", " 7", {}).uid != make_example(
        "arith", 1, story.replace("3", "5") + " Answer:", " 9", {}).uid


def test_no_heldout_question_reaches_training_in_another_layout():
    held = {e.uid for e in mix_tasks(600, seed=0, split="heldout")}
    train = mix_tasks(6000, seed=0, split="train")
    assert not held & {e.uid for e in train}


def test_the_selection_split_is_disjoint_and_about_its_share():
    uids = [f"{i * 2654435761 % 2**64:016x}" for i in range(20_000)]
    share = sum(split_of(u) == "selection" for u in uids) / len(uids)
    assert abs(share - SELECTION_SHARE) < 0.01
    selection = mix_tasks(90, seed=0, split="selection")
    assert {split_of(e.uid) for e in selection} == {"selection"}
