"""Reasoning examples for thought SFT (Phase 3): a task, one strategy's thought in ``<think>``, then the answer.

The thought sits between the task's body and its answer cue (``Answer:``, or the ``def ...: return``
line of a code task): ``body <think> thought </think> cue answer <eos>``. So ``body cue`` is still the
plain prompt every phase is measured on (D6): the answer after the cue is learned with and without a
thought, and "with against without" is a clean ablation of the same model on the same prompt.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent_forge.data.dataset import IGNORE_LABEL, hash_fraction, labelled_examples
from agent_forge.data.tasks import EOS_TEXT, TaskExample, mix_tasks
from agent_forge.data.tokenizer import EOS_ID, ForgeTokenizer
from agent_forge.reasoning.evidence import has_evidence, task_evidence
from agent_forge.reasoning.strategies import STRATEGY_NAMES, THINK_CLOSE, THINK_OPEN
from agent_forge.reasoning.thought_text import write_thought

_CUE = re.compile(r"\s*Answer:\s*$")


@dataclass(frozen=True)
class ReasoningExample:
    """One thought SFT example; ``text`` is what the model trains on."""

    task: TaskExample
    strategy: str
    thought: str
    body: str
    cue: str

    @property
    def text(self) -> str:
        return self.body + THINK_OPEN + self.thought + THINK_CLOSE + self.cue + self.task.answer + EOS_TEXT


def split_prompt(example: TaskExample) -> tuple[str, str]:
    """(body, cue) with ``body + cue == prompt``: the cue is what the answer directly follows."""
    prompt = example.prompt
    prefix = (example.meta or {}).get("code_prefix") or ""
    if example.kind == "code" and prefix and prompt.endswith(prefix):
        return prompt[: len(prompt) - len(prefix)], prefix
    match = _CUE.search(prompt)
    if match:
        return prompt[: match.start()], prompt[match.start() :]
    return prompt, ""


def reasoning_example(task: TaskExample, strategy_name: str, rng: random.Random) -> ReasoningExample:
    body, cue = split_prompt(task)
    thought = write_thought(task_evidence(task), strategy_name, rng)
    return ReasoningExample(task, strategy_name, thought, body, cue)


def build_reasoning_examples(tasks: Sequence[TaskExample], seed: int) -> list[ReasoningExample]:
    """One example per usable task, strategies assigned round-robin so all seven are equally present."""
    rng = random.Random(f"{seed}:reasoning")
    usable = [t for t in tasks if has_evidence(t)]
    return [reasoning_example(t, STRATEGY_NAMES[i % len(STRATEGY_NAMES)], rng) for i, t in enumerate(usable)]


def reasoning_dataset(
    n: int,
    seed: int,
    split: str = "train",
    kinds: Sequence[str] = ("arith", "mc", "code"),
    levels: Sequence[int] = (1, 2, 3, 4, 5),
) -> list[ReasoningExample]:
    """``n`` reasoning examples drawn from the task generator's ``split`` (never the other one)."""
    return build_reasoning_examples(mix_tasks(n, seed, split=split, kinds=kinds, levels=levels), seed)


@dataclass(frozen=True)
class EncodedReasoning:
    """Token ids of one example: ``<bos> body <think> thought </think> cue answer <eos>``."""

    tokens: list[int]
    body_len: int  # tokens of <bos> + body: the anchor of a thought is body_len - 1
    answer_start: int  # index of the first answer token


def encode_reasoning(
    tokenizer: ForgeTokenizer, examples: Sequence[ReasoningExample]
) -> list[EncodedReasoning]:
    """Body, thought, cue and answer encoded apart, so their token boundaries match generation."""
    bodies = tokenizer.encode_batch([e.body for e in examples], bos=True)
    thoughts = tokenizer.encode_batch([THINK_OPEN + e.thought + THINK_CLOSE for e in examples])
    cues = tokenizer.encode_batch([e.cue for e in examples])
    answers = tokenizer.encode_batch([e.task.answer for e in examples])
    encoded = []
    for body, thought, cue, answer in zip(bodies, thoughts, cues, answers, strict=True):
        head = body + thought + cue
        encoded.append(EncodedReasoning(head + answer + [EOS_ID], len(body), len(head)))
    return encoded


def select_examples(
    pairs: Sequence[tuple[ReasoningExample, EncodedReasoning]], n: int, seq_len: int
) -> list[tuple[ReasoningExample, EncodedReasoning]]:
    """``n`` examples, those that fit one row of ``seq_len`` first (in order), then the shortest others."""
    fits = [p for p in pairs if len(p[1].tokens) <= seq_len]
    longer = sorted((p for p in pairs if len(p[1].tokens) > seq_len), key=lambda p: len(p[1].tokens))
    return (fits + longer)[:n]


def thinks_in_training(example: TaskExample, thought_share: Mapping[str, float]) -> bool:
    """Whether this training example is written with a thought: a ``thought_share[kind]`` of the examples
    that carry the data of a thought, chosen by a salted hash of the uid (every copy of it agrees)."""
    share = thought_share.get(example.kind, 0.0)
    return share > 0.0 and has_evidence(example) and hash_fraction(example.uid, ":thought") < share


def training_rows(
    tokenizer: ForgeTokenizer, examples: Sequence[TaskExample], thought_share: Mapping[str, float],
    prompt_share: float, seed: int,
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and labels of ``examples`` in order, a share of them written with their thought.

    Plain examples are ``<bos> prompt answer <eos>``; thinking ones ``<bos> body <think> thought </think>
    cue answer <eos>`` (``encode_reasoning``), so after the body the model learns to open a thought for
    that share of the kind. Labels score the answer (a thought is part of it) and, in ``prompt_share`` of
    the examples, the prompt or body too; -100 elsewhere (``answer_labels``).
    """
    thinking = [i for i, e in enumerate(examples) if thinks_in_training(e, thought_share)]
    reasoning = build_reasoning_examples([examples[i] for i in thinking], seed)
    encoded = dict(zip(thinking, encode_reasoning(tokenizer, reasoning), strict=True))
    plain = [i for i in range(len(examples)) if i not in encoded]
    plain_rows = labelled_examples(tokenizer, [examples[i] for i in plain], prompt_share)
    plain_ids, plain_labels = (dict(zip(plain, rows, strict=True)) for rows in plain_rows)
    ids, labels = [], []
    for index, example in enumerate(examples):
        if index in encoded:
            row = encoded[index]
            scored_body = hash_fraction(example.uid) < prompt_share  # the same choice as answer_labels'
            ids.append(row.tokens)
            labels.append(row.tokens if scored_body else [IGNORE_LABEL] * row.body_len + row.tokens[row.body_len:])
        else:
            ids.append(plain_ids[index])
            labels.append(plain_labels[index])
    return ids, labels
