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
from dataclasses import dataclass, field

from agent_forge.data.dataset import IGNORE_LABEL, hash_fraction
from agent_forge.data.tasks import EOS_TEXT, TaskExample, mix_tasks
from agent_forge.data.tokenizer import BOS_ID, EOS_ID, ForgeTokenizer
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


@dataclass(frozen=True)
class TrainingStyle:
    """How the training mix is written beside plain ``prompt answer`` rows.

    ``thought_share``: per kind, the share written ``body <think> thought </think> cue answer``.
    Tool demonstrations (``demos``) read ``tool_prompt body <think> call result ... </think> cue answer``.
    A ``persona_share`` of all rows starts with ``persona_prompt`` and has the persona's ``persona_greeting``
    (its marker) right after the body. Prompts are read, never scored; tool results are inserted by the
    runtime at generation, so they are never scored either.
    """

    thought_share: Mapping[str, float] = field(default_factory=dict)
    tool_prompt: str = ""
    persona_prompt: str = ""
    persona_greeting: str = ""
    persona_share: float = 0.0
    # demonstrations also under the persona prompt (when there is one): the two baked behaviours must
    # compose (greeting, then calls), and with only persona_share of them the persona bake erased every call
    demo_persona_share: float = 0.5

    def with_persona(self, example: TaskExample, demo: bool = False) -> bool:
        share = max(self.persona_share, self.demo_persona_share) if demo and self.persona_share else self.persona_share
        return share > 0.0 and hash_fraction(example.uid, ":persona") < share


Segment = tuple[str, str]  # text and its role: "body" (scored in prompt_share of the rows), "scored" or "read"


def row_segments(example: TaskExample, style: TrainingStyle, thought: str | None, calls: Sequence[tuple[str, str]]
                 ) -> list[Segment]:
    """The pieces of one training row in order, each with its role."""
    persona = style.with_persona(example, demo=bool(calls))
    body, cue = split_prompt(example) if thought is not None or calls or persona else (example.prompt, "")
    segments: list[Segment] = [(style.persona_prompt, "read")] if persona else []
    if calls:
        segments.append((style.tool_prompt, "read"))
    segments.append((body, "body"))
    if persona:
        segments.append((style.persona_greeting, "scored"))
    if thought is not None:
        segments.append((THINK_OPEN + thought + THINK_CLOSE, "scored"))
    elif calls:
        segments.append((THINK_OPEN, "scored"))
        for call, result in calls:
            segments += [(call, "scored"), (result, "read")]  # the runtime inserts results
        segments.append((THINK_CLOSE, "scored"))
    segments += [(cue, "scored"), (example.answer + EOS_TEXT, "scored")]
    return [(text, role) for text, role in segments if text]


def training_rows(
    tokenizer: ForgeTokenizer, examples: Sequence[TaskExample], style: TrainingStyle | Mapping[str, float],
    prompt_share: float, seed: int, demos: Sequence[tuple[TaskExample, Sequence[tuple[str, str]]]] = (),
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and labels of ``examples`` in order, then of the tool ``demos`` (task, its calls).

    Plain examples are ``<bos> prompt answer <eos>``; a ``thought_share`` of a kind's examples is written with
    its thought, so after the body the model learns to open a thought for that share of the kind; see
    ``TrainingStyle`` for demonstrations and the persona. Labels score what follows the body and, in
    ``prompt_share`` of the examples, the body too (the same choice as ``answer_labels``'); -100 elsewhere.
    """
    style = style if isinstance(style, TrainingStyle) else TrainingStyle(thought_share=style)
    thinking = [i for i, e in enumerate(examples) if thinks_in_training(e, style.thought_share)]
    thoughts = dict(zip(thinking, (r.thought for r in build_reasoning_examples([examples[i] for i in thinking],
                                                                             seed)), strict=True))
    rows = [row_segments(e, style, thoughts.get(i), ()) for i, e in enumerate(examples)]
    rows += [row_segments(task, style, None, calls) for task, calls in demos]
    owners = [*examples, *(task for task, _ in demos)]
    return _encode_rows(tokenizer, rows, [hash_fraction(e.uid) < prompt_share for e in owners])


def _encode_rows(tokenizer: ForgeTokenizer, rows: Sequence[Sequence[Segment]], body_scored: Sequence[bool]
                 ) -> tuple[list[list[int]], list[list[int]]]:
    """Every segment of every row encoded in one batch (segments end at special tokens or prompt/answer
    boundaries, so the pieces are the tokens generation produces), then joined with ``<bos>``."""
    flat = [text for row in rows for text, _ in row]
    encoded, position, ids, labels = tokenizer.encode_batch(flat), 0, [], []
    for row, scored_body in zip(rows, body_scored, strict=True):
        row_ids, row_labels = [BOS_ID], [BOS_ID if scored_body else IGNORE_LABEL]
        for _, role in row:
            piece = encoded[position]
            position += 1
            scored = role == "scored" or (role == "body" and scored_body)
            row_ids += piece
            row_labels += piece if scored else [IGNORE_LABEL] * len(piece)
        ids.append(row_ids)
        labels.append(row_labels)
    return ids, labels
