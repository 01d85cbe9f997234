"""Accuracy with intervals and baselines: Wilson bounds, chance, majority, tables, stratified selection."""

from __future__ import annotations

import math

import pytest

from agent_forge.data.tasks import make_example, mix_tasks
from agent_forge.eval.capability import (
    Accuracy,
    accuracy_table,
    chance_level,
    flat_accuracy,
    majority_share,
    wilson_interval,
)
from agent_forge.eval.suite import select_examples


def test_wilson_interval_matches_the_closed_form():
    # 8 of 10: the textbook Wilson 95% interval is (0.4902, 0.9433)
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 20)[0] == 0.0 and wilson_interval(20, 20)[1] == pytest.approx(1.0)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_narrows_with_more_trials_and_contains_the_rate():
    narrow, wide = wilson_interval(500, 1000), wilson_interval(50, 100)
    assert narrow[1] - narrow[0] < wide[1] - wide[0]
    assert narrow[0] < 0.5 < narrow[1]


def _mc(answer: str, n_choices: int, uid_salt: str):
    choices = [f"c{i}{uid_salt}" for i in range(n_choices)]
    meta = {"question": "q" + uid_salt, "choices": choices, "answer_index": 0}
    return make_example("mc", n_choices - 1, "Q?" + uid_salt, answer, meta)


def test_chance_is_one_over_the_options_for_multiple_choice_and_zero_otherwise():
    assert chance_level(_mc(" A", 4, "x")) == 0.25
    assert chance_level(make_example("arith", 1, "2+2? Answer:", " 4", {})) == 0.0


def test_majority_share_is_the_most_frequent_answer_rate():
    examples = [_mc(" B", 2, str(i)) for i in range(3)] + [_mc(" A", 2, "z")]
    assert majority_share(examples) == 0.75
    assert majority_share([]) == 0.0


def test_accuracy_table_counts_per_kind_and_level():
    examples = mix_tasks(60, seed=1, split="heldout", levels=(1, 2))
    correct = [e.kind == "code" or (e.kind == "mc" and e.level == 1) for e in examples]
    table = accuracy_table(examples, correct)
    assert table["overall"]["n"] == 60 and table["overall"]["correct"] == sum(correct)
    assert table["kinds"]["code"]["accuracy"] == 1.0 and table["kinds"]["arith"]["accuracy"] == 0.0
    assert table["kinds"]["mc"]["levels"][1]["accuracy"] == 1.0 and table["kinds"]["mc"]["levels"][2]["accuracy"] == 0
    # multiple choice has 2 options at level 1 and 3 at level 2: chance between 1/3 and 1/2
    assert 1 / 3 < table["kinds"]["mc"]["chance"] < 1 / 2 and table["kinds"]["arith"]["chance"] == 0.0
    with pytest.raises(ValueError):
        accuracy_table(examples, correct[:-1])


def test_flat_accuracy_names_every_kind_level_and_interval():
    examples = mix_tasks(30, seed=2, split="heldout", levels=(1,))
    flat = flat_accuracy(examples, [True] * 30)
    for kind in ("arith", "mc", "code"):
        assert flat[f"accuracy_{kind}"] == 1.0 and flat[f"accuracy_{kind}_level_1"] == 1.0
        assert flat[f"accuracy_{kind}_n"] == 10 and flat[f"accuracy_{kind}_ci_high"] == pytest.approx(1.0)
    assert flat["accuracy_n"] == 30 and flat["accuracy_ci_low"] > 0.85


def test_intervals_apart_only_when_they_do_not_overlap():
    assert Accuracy(90, 100, 0, 0).apart_from(Accuracy(50, 100, 0, 0))
    assert not Accuracy(55, 100, 0, 0).apart_from(Accuracy(50, 100, 0, 0))
    assert math.isnan(Accuracy(0, 0, 0, 0).value)


def test_select_examples_filters_and_stratifies_evenly():
    examples = mix_tasks(300, seed=3, split="heldout", levels=(1, 2, 3, 4, 5))
    assert {e.kind for e in select_examples(examples, kinds=["mc"])} == {"mc"}
    assert {e.level for e in select_examples(examples, levels=[2, 3])} == {2, 3}
    chosen = select_examples(examples, n=30)
    assert len(chosen) == 30
    groups = {(e.kind, e.level) for e in chosen}
    assert len(groups) == 15 and all(sum((e.kind, e.level) == g for e in chosen) == 2 for g in groups)
    assert select_examples(examples, n=10_000) == examples


def test_select_examples_gives_a_small_group_all_it_has():
    examples = mix_tasks(40, seed=4, split="heldout", levels=(1,), kinds=("arith", "mc"))
    few = [e for e in examples if e.kind == "mc"][:2] + [e for e in examples if e.kind == "arith"]
    chosen = select_examples(few, n=12)
    assert sum(e.kind == "mc" for e in chosen) == 2 and len(chosen) == 12
