"""Byte-level BPE trained on the run's own corpus, with the reserved special tokens at ids 0..N-1.

Digits are split one per token by the pre-tokenizer so that the model sees numbers digit by digit (an
arithmetic task is then learnable at all); byte-level BPE needs no unknown token, so any text round-trips.
The special tokens come first in every tokenizer (interfaces.md, D3), so later phases can rely on their ids.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS: tuple[str, ...] = (
    "<pad>", "<bos>", "<eos>", "<unk>", "<think>", "</think>", "<step>", "<reason>", "<mece>", "<falsify>",
    "<expert>", "<doubt>", "<ortho>", "<bayes>", "<domain>", "<tool>", "</tool>", "<args>", "</args>",
    "<result>", "</result>", "<persona>", "</persona>", "<answer>",
)  # fmt: skip
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
MIN_VOCAB_SIZE = len(SPECIAL_TOKENS) + 256  # every byte must have a token
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "tokenizer_config.json"
_SPECIAL_PATTERN = re.compile("|".join(re.escape(t) for t in SPECIAL_TOKENS))
UNBOUNDED_LENGTH = 1 << 30  # model_max_length of a tokenizer saved without a model (the session's)
# The chat template, in the format of every task the models learn (a prompt, then the answer cue): <bos>, the
# system and user texts one per line, each assistant turn as "\nAnswer: text<eos>", and with
# add_generation_prompt the answer cue "\nAnswer:" at the end, so the model writes the answer next:
# [{"role": "user", "content": "What is 2 + 3?"}] -> "<bos>What is 2 + 3?\nAnswer:".
CHAT_TEMPLATE = (
    "{{- bos_token -}}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'assistant' -%}"
    "{{- '\\nAnswer: ' + (message['content'] | trim) + eos_token -}}"
    "{%- else -%}"
    "{{- ('' if loop.first else '\\n') + (message['content'] | trim) -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt %}{{ '\\nAnswer:' }}{% endif -%}"
)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in character for every byte, as used by the ByteLevel pre-tokenizer."""
    spans = ((ord("!"), ord("~")), (ord("¡"), ord("¬")), (ord("®"), ord("ÿ")))
    printable = [b for first, last in spans for b in range(first, last + 1)]
    mapping, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


_CHAR_TO_BYTE = {char: byte for byte, char in _bytes_to_unicode().items()}


def _pieces_without_specials(texts: Iterable[str]) -> Iterator[str]:
    """Training text split around special-token strings, so no merge ever learns part of one."""
    for text in texts:
        for piece in _SPECIAL_PATTERN.split(text):
            if piece:
                yield piece


def _empty_tokenizer() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<bos> $A", pair="<bos> $A $B:1", special_tokens=[("<bos>", BOS_ID)]
    )
    return tokenizer


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> ForgeTokenizer:
    """Train on ``texts``; the result has at most ``vocab_size`` tokens (fewer if the corpus is small)."""
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(f"vocab_size must be at least {MIN_VOCAB_SIZE} (special tokens + 256 bytes)")
    tokenizer = _empty_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_pieces_without_specials(texts), trainer)
    return ForgeTokenizer(tokenizer)


class ForgeTokenizer:
    """A thin wrapper over ``tokenizers.Tokenizer`` with the conventions of this project."""

    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID

    def __init__(self, tokenizer: Tokenizer) -> None:
        for index, token in enumerate(SPECIAL_TOKENS):
            if tokenizer.token_to_id(token) != index:
                raise ValueError(f"special token {token} must have id {index}")
        self._tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def special_id(self, name: str) -> int:
        """Id of a special token, by ``"<eos>"`` or ``"eos"``."""
        token = name if name.startswith("<") else f"<{name}>"
        if token not in SPECIAL_TOKENS:
            raise KeyError(f"{name} is not a special token; known: {' '.join(SPECIAL_TOKENS)}")
        return SPECIAL_TOKENS.index(token)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Token ids of ``text``; special-token strings inside it map to their ids."""
        ids = self._tokenizer.encode(text, add_special_tokens=False).ids
        return [BOS_ID] * bos + ids + [EOS_ID] * eos

    def encode_batch(self, texts: Sequence[str], *, bos: bool = False, eos: bool = False) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [[BOS_ID] * bos + e.ids + [EOS_ID] * eos for e in encodings]

    def decode(self, ids: Sequence[int], *, skip_special: bool = False) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special)

    @cached_property
    def token_byte_lengths(self) -> list[int]:
        """UTF-8 bytes each token stands for (0 for special tokens): the denominator of bits per byte."""
        lengths = [0] * len(SPECIAL_TOKENS)
        for index in range(len(SPECIAL_TOKENS), self.vocab_size):
            token = self._tokenizer.id_to_token(index)
            lengths.append(sum(1 for char in token if char in _CHAR_TO_BYTE))
        return lengths

    def to_json(self) -> str:
        return self._tokenizer.to_str(pretty=True)

    def save(self, directory: str | Path, model_max_length: int | None = None) -> Path:
        """Write ``tokenizer.json`` (and a config so ``AutoTokenizer.from_pretrained`` works, with the chat
        template and, beside a model, its context length as ``model_max_length``); returns it."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomic(directory / TOKENIZER_FILE, self.to_json())
        config = _hf_config(model_max_length or UNBOUNDED_LENGTH)
        _write_atomic(directory / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True))
        return directory / TOKENIZER_FILE

    @classmethod
    def load(cls, directory: str | Path) -> ForgeTokenizer:
        path = Path(directory)
        path = path / TOKENIZER_FILE if path.is_dir() else path
        return cls(Tokenizer.from_file(str(path)))

    def to_hf(self) -> PreTrainedTokenizerFast:
        """A ``transformers`` tokenizer with pad/bos/eos set, for ``generate()`` and HF tooling.

        ``transformers`` is imported here, not at module load: it takes seconds and most users never need it.
        """
        from transformers import PreTrainedTokenizerFast

        config = _hf_config()
        config.pop("tokenizer_class")
        return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(self.to_json()), **config)


def _hf_config(model_max_length: int = UNBOUNDED_LENGTH) -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "chat_template": CHAT_TEMPLATE,
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "extra_special_tokens": list(SPECIAL_TOKENS[4:]),
        "padding_side": "left",
        "model_max_length": model_max_length,
    }


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
