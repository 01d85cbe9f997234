"""Real-dataset adapters on small local files in the Hub's formats, text files, mixtures, and errors."""

from __future__ import annotations

import socket
import time
from collections import Counter
from pathlib import Path

import pytest
from pydantic import ValidationError

from agent_forge.data.adapters import expression_steps, format_number
from agent_forge.data.sandbox import check_code_answers
from agent_forge.data.sources import DataSourceError, SourceConfig, load_mixture, load_source
from agent_forge.data.tasks import split_of
from support.data_files import write_arc_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "datasets"


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch) -> list:
    """Every connection attempt fails as on an offline machine, and is recorded."""
    attempts: list = []

    def refuse(sock, address):
        attempts.append(address)
        raise OSError("network disabled in tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    return attempts


@pytest.fixture(autouse=True)
def local_sources_stay_offline(request, network_attempts):
    yield
    if "hub" not in request.node.name:
        assert network_attempts == [], "a local source tried to reach the network"


def load(kind: str, path: str, tmp_path: Path, **extra):
    source = SourceConfig(name=kind, kind=kind, path=str(FIXTURES / path), **extra)
    return load_source(source, cache_dir=str(tmp_path))


def test_arc_easy(tmp_path):
    examples = load("arc_easy", "arc_easy/train.jsonl", tmp_path)
    assert len(examples) == 11  # the row with an answer key outside its labels is skipped
    first = examples[0]
    assert first.kind == "mc" and first.answer == " B" and first.prompt.endswith("\nAnswer:")
    assert "B. a balance" in first.prompt and first.meta["choices"][1] == "a balance"
    numeric = next(e for e in examples if e.meta["id"] == "Fixture_ARC_4")
    assert numeric.answer == " A" and "A. 0" in numeric.prompt
    five = next(e for e in examples if e.meta["id"] == "Fixture_ARC_7")
    assert five.answer == " C" and "E. a paper plate" in five.prompt


def test_gsm8k_answers_and_steps(tmp_path):
    examples = load("gsm8k", "gsm8k/train.jsonl", tmp_path)
    assert len(examples) == 12  # the row without '####' is skipped
    by_answer = {e.answer: e for e in examples}
    assert " 1500" in by_answer  # '#### 1,500'
    tickets = by_answer[" 76"]
    assert tickets.kind == "arith" and tickets.meta["steps"] == ["4 * 15 = 60", "2 * 8 = 16", "60 + 16 = 76"]
    assert tickets.level == 3 and "<<" not in tickets.meta["solution"]
    assert tickets.prompt.endswith("?\nAnswer:")


def test_parquet_and_json_give_the_same_examples(tmp_path):
    for kind, stem in (("gsm8k", "gsm8k/train"), ("svamp", "svamp/train")):
        json_file = next(FIXTURES.glob(f"{stem}.json*"))
        from_json = load(kind, str(json_file.relative_to(FIXTURES)), tmp_path)
        assert from_json == load(kind, f"{stem}.parquet", tmp_path)


def test_svamp(tmp_path):
    examples = load("svamp", "svamp/train.json", tmp_path)
    by_id = {e.prompt.split(".")[0]: e for e in examples}
    paul = by_id["Paul had 15 marbles"]
    assert paul.answer == " 17" and paul.meta["steps"] == ["15 + 6 = 21", "21 - 4 = 17"] and paul.level == 2
    assert by_id["A rope is 10 meters long"].answer == " 2.5"


def test_piqa(tmp_path):
    examples = load("piqa", "piqa/train.jsonl", tmp_path)
    assert len(examples) == 9  # the unlabelled row is skipped
    assert Counter(e.answer for e in examples) == {" A": 6, " B": 3}
    assert all(len(e.meta["choices"]) == 2 for e in examples)


@pytest.mark.parametrize("path, count", [("mbpp/full.jsonl", 8), ("mbpp/sanitized.json", 4)])
def test_mbpp_reference_code_passes_its_tests_in_the_sandbox(tmp_path, path, count):
    examples = load("mbpp", path, tmp_path)
    assert len(examples) == count and all(e.kind == "code" for e in examples)
    assert all("\r" not in e.answer and "\t" not in e.answer for e in examples)
    assert all(check_code_answers(examples, [e.answer for e in examples]))
    wrong = [e.answer.replace("return", "return None and", 1) for e in examples]
    assert not any(check_code_answers(examples, wrong))


def test_text_files_become_paragraph_examples(tmp_path):
    examples = load("text", "text", tmp_path)
    assert len(examples) == 5 and {e.kind for e in examples} == {"text"}
    assert all(e.answer == "" and "\r" not in e.prompt for e in examples)
    assert any("café" in e.prompt for e in examples)
    assert len(load("text", "text/*.txt", tmp_path)) == 3  # a glob names files too


def test_mixture_weights_and_split(tmp_path):
    sources = [
        SourceConfig(name="gen", kind="builtin", weight=3.0),
        SourceConfig(name="gsm", kind="gsm8k", path=str(FIXTURES / "gsm8k/train.jsonl"), weight=1.0),
    ]
    train = load_mixture(sources, seed=0, n_examples=400, cache_dir=str(tmp_path))
    counts = Counter(e.meta["source"] for e in train)
    assert len(train) == 400 and counts == {"builtin": 300, "gsm8k": 100}
    assert {split_of(e.uid) for e in train} == {"train"}
    gsm_train = {e.uid for e in train if e.meta["source"] == "gsm8k"}
    heldout = load_mixture(sources, seed=0, n_examples=100, split="heldout", cache_dir=str(tmp_path))
    assert {e.uid for e in heldout}.isdisjoint({e.uid for e in train})
    assert gsm_train | {e.uid for e in heldout if e.meta["source"] == "gsm8k"} <= {
        e.uid for e in load("gsm8k", "gsm8k/train.jsonl", tmp_path)
    }
    assert train == load_mixture(sources, seed=0, n_examples=400, cache_dir=str(tmp_path))


def test_mixture_without_a_size_uses_the_sources_sizes(tmp_path):
    sources = [
        SourceConfig(name="gen", kind="builtin", max_examples=50),
        SourceConfig(name="notes", kind="text", path=str(FIXTURES / "text")),
    ]
    mixed = load_mixture(sources, seed=1)
    text_train = [e for e in load("text", "text", tmp_path) if split_of(e.uid) == "train"]
    assert len(mixed) == 50 + len(text_train)


def test_unreachable_hub_fails_fast_in_one_line_naming_the_local_alternative(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataSourceError) as info:
        load_source(SourceConfig(name="gsm", kind="gsm8k"), cache_dir=str(tmp_path))
    assert time.perf_counter() - start < 5.0  # a quick probe, not minutes of download retries
    message = str(info.value)
    assert "\n" not in message and "openai/gsm8k" in message and "path:" in message and "####" in message


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(DataSourceError, match=r"no .* files"):
        load_source(SourceConfig(name="x", kind="piqa", path=str(tmp_path / "absent.jsonl")))


def test_source_config_validation():
    with pytest.raises(ValidationError):
        SourceConfig(name="x", kind="gsm8k", colour="red")
    with pytest.raises(ValidationError, match="text sources need a path"):
        SourceConfig(name="x", kind="text")
    with pytest.raises(ValidationError, match="not both"):
        SourceConfig(name="x", kind="gsm8k", path="a.jsonl", hub_id="openai/gsm8k")
    with pytest.raises(ValidationError):
        SourceConfig(name="x", kind="gsm8k", weight=0)


def test_number_and_expression_normalisation():
    assert [format_number(v) for v in ("1,200", 72.0, "$15", 2.5, "n/a")] == ["1200", "72", "15", "2.5", None]
    assert expression_steps("( ( 3.0 * 12.0 ) - 5.0 )") == ["3 * 12 = 36", "36 - 5 = 31"]
    assert expression_steps("__import__('os')") == []


@pytest.mark.parametrize("split", ["heldout", "selection"])
def test_a_small_source_is_never_repeated_outside_train_and_the_shortfall_is_said(tmp_path, caplog, split):
    arc = write_arc_file(tmp_path, 120)
    sources = [
        SourceConfig(name="gen", kind="builtin", weight=2.0),
        SourceConfig(name="arc", kind="arc_easy", path=str(arc), weight=1.0),
    ]
    in_split = sum(split_of(e.uid) == split for e in load_source(sources[1], str(tmp_path / "cache")))
    assert 0 < in_split < 21
    with caplog.at_level("WARNING", logger="agent_forge.data.sources"):
        mixed = load_mixture(sources, seed=0, n_examples=63, split=split, cache_dir=str(tmp_path / "cache"))
    uids = [e.uid for e in mixed]
    assert len(uids) == len(set(uids)) and {split_of(u) for u in uids} == {split}
    assert Counter(e.meta["source"] for e in mixed)["arc_easy"] == in_split
    assert mixed.shortfall == {"arc": 21 - in_split} and len(mixed) == 63 - (21 - in_split)
    lines = [r.getMessage() for r in caplog.records if "arc" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0] and f"{21 - in_split} examples short" in lines[0]
    train = load_mixture(sources, seed=0, n_examples=300, cache_dir=str(tmp_path / "cache"))
    assert train.shortfall == {} and len(train) == 300  # training may still repeat a small source


def test_training_examples_follow_the_configured_mix_unless_given_one():
    """`data.kind_weights` is every phase's training mix; a specialist's own weights replace it."""
    from agent_forge.config import load_config
    from agent_forge.data.sources import training_examples

    config = load_config("smoke", overrides=["data.kind_weights={mc: 0.0, code: 0.0}"])
    assert {e.kind for e in training_examples(config, 90, seed=3)} == {"arith"}
    assert {e.kind for e in training_examples(config, 90, seed=3, kind_weights={"arith": 0.0, "mc": 0.0})} == {"code"}
