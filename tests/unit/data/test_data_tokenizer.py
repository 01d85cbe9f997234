"""The byte-level BPE tokenizer: reserved ids, digit splitting, round trips, determinism, HF interop."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent_forge.data.tasks import mix_tasks, training_text
from agent_forge.data.tokenizer import (
    BOS_ID,
    EOS_ID,
    MIN_VOCAB_SIZE,
    PAD_ID,
    SPECIAL_TOKENS,
    TOKENIZER_FILE,
    ForgeTokenizer,
    train_tokenizer,
)

INTERFACE_ORDER = [
    "<pad>",
    "<bos>",
    "<eos>",
    "<unk>",
    "<think>",
    "</think>",
    "<step>",
    "<reason>",
    "<mece>",
    "<falsify>",
    "<expert>",
    "<doubt>",
    "<ortho>",
    "<bayes>",
    "<domain>",
    "<tool>",
    "</tool>",
    "<args>",
    "</args>",
    "<result>",
    "</result>",
    "<persona>",
    "</persona>",
    "<answer>",
]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return [training_text(e) for e in mix_tasks(1500, seed=0)]


@pytest.fixture(scope="module")
def tokenizer(corpus) -> ForgeTokenizer:
    return train_tokenizer(corpus, vocab_size=800)


def test_special_tokens_come_first_in_the_interface_order(tokenizer):
    assert list(SPECIAL_TOKENS) == INTERFACE_ORDER
    for index, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.encode(token) == [index]
        assert tokenizer.special_id(token) == index
    assert tokenizer.special_id("eos") == EOS_ID and tokenizer.special_id("<think>") == 4
    with pytest.raises(KeyError):
        tokenizer.special_id("<nope>")


def test_vocab_size_is_bounded_by_the_request(tokenizer):
    assert MIN_VOCAB_SIZE < tokenizer.vocab_size <= 800
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["abc"], vocab_size=100)


def test_digits_are_one_token_each(tokenizer):
    for text in ["12345", " 907", "x=1000000", "Answer: 42"]:
        digits = [d for d in text if d.isdigit()]
        pieces = [tokenizer.decode([i]) for i in tokenizer.encode(text)]
        assert [p for p in pieces if any(c.isdigit() for c in p)] == digits


@pytest.mark.parametrize(
    "text",
    ["Tom has 3 apples.\nAnswer: 7", "  indented\tcode()", "café naïve 東京 😀", "", "<think>a</think>"],
)
def test_any_text_round_trips(tokenizer, text):
    assert tokenizer.decode(tokenizer.encode(text)) == text


def test_bos_eos_handling(tokenizer):
    ids = tokenizer.encode("hello", bos=True, eos=True)
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and tokenizer.encode("hello") == ids[1:-1]
    assert tokenizer.decode(ids, skip_special=True) == "hello"
    batch = tokenizer.encode_batch(["a", "b c"], bos=True)
    assert batch == [tokenizer.encode("a", bos=True), tokenizer.encode("b c", bos=True)]


def test_no_learned_token_contains_part_of_a_special_token(tokenizer):
    vocab = [tokenizer.decode([i]) for i in range(len(SPECIAL_TOKENS), tokenizer.vocab_size)]
    assert not [t for t in vocab if "<eos" in t or "eos>" in t]


def test_token_byte_lengths_count_utf8_bytes(tokenizer):
    text = "Ünïcode 東京 and 123 <eos>plain"
    lengths = tokenizer.token_byte_lengths
    assert sum(lengths[i] for i in tokenizer.encode(text)) == len(text.replace("<eos>", "").encode("utf-8"))
    assert all(lengths[i] == 0 for i in range(len(SPECIAL_TOKENS)))


def test_training_is_deterministic_in_process_and_across_processes(corpus, tokenizer, tmp_path):
    assert train_tokenizer(corpus, vocab_size=800).to_json() == tokenizer.to_json()
    script = (
        "import sys; from agent_forge.data.tasks import mix_tasks, training_text;"
        "from agent_forge.data.tokenizer import train_tokenizer;"
        "t = train_tokenizer([training_text(e) for e in mix_tasks(1500, seed=0)], vocab_size=800);"
        "t.save(sys.argv[1])"
    )
    subprocess.run([sys.executable, "-c", script, str(tmp_path / "other")], check=True)
    tokenizer.save(tmp_path / "here")
    assert (tmp_path / "here" / TOKENIZER_FILE).read_bytes() == (
        tmp_path / "other" / TOKENIZER_FILE
    ).read_bytes()


def test_save_and_load_round_trip(tokenizer, tmp_path, corpus):
    path = tokenizer.save(tmp_path / "tok")
    assert path.name == TOKENIZER_FILE
    loaded = ForgeTokenizer.load(tmp_path / "tok")
    assert loaded.to_json() == tokenizer.to_json()
    assert loaded.encode_batch(corpus[:50]) == tokenizer.encode_batch(corpus[:50])


def test_hugging_face_views_share_ids_and_special_tokens(tokenizer, tmp_path):
    from transformers import AutoTokenizer

    hf = tokenizer.to_hf()
    text = "Tom has 3 apples. <think> Answer: 7"
    assert hf(text)["input_ids"] == tokenizer.encode(text, bos=True)
    assert (hf.pad_token_id, hf.bos_token_id, hf.eos_token_id) == (PAD_ID, BOS_ID, EOS_ID)
    assert hf.convert_tokens_to_ids("<answer>") == SPECIAL_TOKENS.index("<answer>")
    assert len(hf) == tokenizer.vocab_size
    tokenizer.save(tmp_path / "auto")
    auto = AutoTokenizer.from_pretrained(tmp_path / "auto")
    assert auto(text)["input_ids"] == tokenizer.encode(text, bos=True)
    assert auto.eos_token_id == EOS_ID and auto.pad_token_id == PAD_ID


def test_a_foreign_tokenizer_without_the_reserved_ids_is_refused():
    from tokenizers import Tokenizer, models

    with pytest.raises(ValueError, match="special token"):
        ForgeTokenizer(Tokenizer(models.BPE()))
