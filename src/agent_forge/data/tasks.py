"""Reasoning tasks with verifiable answers: the example type, the train/held-out split, the generators.

The split is a property of the example itself (a hash of its ``uid``), never of the order in which it
was drawn, so no seed, count or mixture can leak a held-out example into training (D10). The ``uid`` hashes
the question's identity, not its layout: a multiple-choice question is the same question in any option
order or label style, and an arithmetic story the same story whatever its answer cue, so a held-out
question never reaches training in another dress.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from agent_forge.data.task_arith import generate_arith
from agent_forge.data.task_code import generate_code
from agent_forge.data.task_mc import generate_mc

Split = Literal["train", "heldout", "selection"]
SPLITS: tuple[str, ...] = ("train", "heldout", "selection")
TASK_KINDS: tuple[str, ...] = ("arith", "mc", "code")
EOS_TEXT = "<eos>"
HELDOUT_SHARE = 0.10  # share of all possible examples (by uid hash) reserved for the D6 reports
SELECTION_SHARE = 0.05  # a second share for choosing (fitness, monitoring, tuning): never reported on
_HASH_BUCKETS = 10_000

Generator = Callable[[random.Random, int], tuple[str, str, dict]]
_GENERATORS: dict[str, Generator] = {"arith": generate_arith, "mc": generate_mc, "code": generate_code}


@dataclass(frozen=True)
class TaskExample:
    """One example (interfaces.md, D4): the model reads ``prompt`` and must produce ``answer`` then <eos>."""

    uid: str
    kind: str
    level: int
    prompt: str
    answer: str
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> TaskExample:
        return cls(
            **{k: data[k] for k in ("uid", "kind", "level", "prompt", "answer")}, meta=dict(data["meta"])
        )


def make_uid(kind: str, prompt: str, answer: str, meta: Mapping | None = None) -> str:
    """sha1 of the question's identity (``question_identity``), first 16 hex characters."""
    identity = question_identity(kind, prompt, answer, meta or {})
    return hashlib.sha1(identity.encode("utf-8")).hexdigest()[:16]


def question_identity(kind: str, prompt: str, answer: str, meta: Mapping) -> str:
    """What makes two examples the same question, layout aside.

    Multiple choice (any source whose meta names its ``question`` and ``choices``): the question, the set of
    choices and the right one, so reordered or relabelled options are the same question. Everything else:
    the prompt with white space folded and the trailing answer cue dropped, plus the answer.
    """
    choices, index = meta.get("choices"), meta.get("answer_index")
    if "question" in meta and isinstance(choices, list) and isinstance(index, int) and 0 <= index < len(choices):
        return "\x1f".join([kind, str(meta["question"]), str(choices[index]), *sorted(map(str, choices))])
    folded = " ".join(prompt.split()).removesuffix("Answer:").rstrip()
    return "\x1f".join([kind, folded, answer.strip()])


def make_example(kind: str, level: int, prompt: str, answer: str, meta: dict) -> TaskExample:
    return TaskExample(make_uid(kind, prompt, answer, meta), kind, level, prompt, answer, meta)


def split_of(uid: str) -> Split:
    """Which split an example belongs to, decided by its hash alone."""
    bucket = int(uid, 16) % _HASH_BUCKETS
    if bucket < HELDOUT_SHARE * _HASH_BUCKETS:
        return "heldout"
    if bucket < (HELDOUT_SHARE + SELECTION_SHARE) * _HASH_BUCKETS:
        return "selection"
    return "train"


def training_text(example: TaskExample) -> str:
    """The text a model trains on: prompt, answer, end of sequence."""
    return example.prompt + example.answer + EOS_TEXT


def generate_tasks(kind: str, level: int, n: int, seed: int, split: Split = "train",
                   seen: set[str] | None = None) -> list[TaskExample]:
    """``n`` examples of one kind and level from the given split, reproducible from ``seed``.

    Held-out and selection examples are unique (a repeated example would count twice in accuracy), also
    across calls that share ``seen`` (the same question can be drawn at two levels); training examples
    may repeat, as in any dataset read for several epochs.
    """
    if kind not in _GENERATORS:
        raise ValueError(f"unknown task kind '{kind}'; choose from {', '.join(TASK_KINDS)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
    rng = random.Random(f"{seed}:{kind}:{level}:{split}")
    generate = _GENERATORS[kind]
    examples: list[TaskExample] = []
    seen = set() if seen is None else seen
    budget = 1000 + 60 * n
    while len(examples) < n and budget > 0:
        budget -= 1
        example = make_example(kind, level, *generate(rng, level))
        if split_of(example.uid) != split or (split != "train" and example.uid in seen):
            continue
        seen.add(example.uid)
        examples.append(example)
    if len(examples) < n:
        raise ValueError(
            f"only {len(examples)} distinct {split} examples of {kind} level {level}; ask for fewer"
        )
    return examples


def mix_tasks(
    n: int,
    seed: int,
    split: Split = "train",
    kinds: Sequence[str] = TASK_KINDS,
    levels: Sequence[int] = (1, 2, 3, 4, 5),
    kind_weights: Mapping[str, float] | None = None,
) -> list[TaskExample]:
    """``n`` examples spread over kinds and levels by ``kind_weights`` (default equal), shuffled.

    A key ``"arith"`` weighs every level of that kind; ``"arith@1"`` one level, and it wins over the kind's.
    """
    given = kind_weights or {}
    weights = {(k, lv): given.get(f"{k}@{lv}", given.get(k, 1.0)) for k in kinds for lv in levels}
    counts = apportion(n, weights)
    seen: set[str] = set()  # one question drawn at two levels still counts once in an evaluation split
    examples = [
        example
        for (kind, level), count in counts.items()
        if count
        for example in generate_tasks(kind, level, count, seed, split, seen)
    ]
    random.Random(f"{seed}:mix:{split}").shuffle(examples)
    return examples


def apportion(n: int, weights: Mapping[Hashable, float]) -> dict[Hashable, int]:
    """Split ``n`` into integer counts proportional to ``weights`` (largest remainders get the rest)."""
    if n < 0 or not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError("a mixture needs n >= 0, at least one part, and a positive total weight")
    total = sum(weights.values())
    exact = {key: n * w / total for key, w in weights.items()}
    counts = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(exact, key=lambda key: exact[key] - counts[key], reverse=True)
    for key in by_remainder[: n - sum(counts.values())]:
        counts[key] += 1
    return counts
