"""Validity and coherence of generated thinking.

Validity (the convergence check after thought SFT): after the forced ``<think>``, the model closes the
thought with ``</think>`` after a non-empty, non-degenerate thought, then writes the task's answer cue, an
answer in the task's format (a number, an option letter, a code expression) and ``<eos>``.

Coherence (spec 2.3.4 weights 0.30/0.30/0.25/0.15):
- semantic: cosine similarity of all-MiniLM-L6-v2 embeddings of the thought and the task body (``semantic``);
- logical: share of the thought's checkable claims that hold for the task (``consistency``);
- relevance: share of the thought's content words found in the task (``consistency``);
- fluency: the thought's per-token probability under the model that wrote it, exp(mean log p).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from agent_forge.data.tokenizer import EOS_ID, ForgeTokenizer

COHERENCE_WEIGHTS = {"semantic": 0.30, "logical": 0.30, "relevance": 0.25, "fluency": 0.15}
_ANSWER_FORMATS = {
    "arith": re.compile(r"^ -?\d+(?:\.\d+)?$"),
    "mc": re.compile(r"^ [A-H]$"),
    "code": re.compile(r"^\s*[^\s<][^<]*$"),
}
DEGENERATE_SHARE = 0.5


@dataclass(frozen=True)
class ParsedThinking:
    """A continuation generated after ``<think>``, split into its parts."""

    thought_ids: list[int]
    closed: bool
    answer_text: str
    cue_ok: bool
    format_ok: bool
    ended: bool
    degenerate: bool

    @property
    def well_formed(self) -> bool:
        return self.closed and bool(self.thought_ids) and not self.degenerate

    @property
    def valid(self) -> bool:
        return self.well_formed and self.cue_ok and self.format_ok and self.ended


def answer_format_ok(kind: str, answer: str) -> bool:
    pattern = _ANSWER_FORMATS.get(kind)
    return bool(pattern.match(answer)) if pattern else bool(answer.strip())


def is_degenerate(ids: Sequence[int]) -> bool:
    """A thought that is mostly one repeated token (the collapse D10 warns about)."""
    if len(ids) < 4:
        return False
    return Counter(ids).most_common(1)[0][1] / len(ids) > DEGENERATE_SHARE


def parse_thinking(
    tokenizer: ForgeTokenizer, generated: Sequence[int], cue: str, kind: str, close_id: int
) -> ParsedThinking:
    """Split ``generated`` (the tokens after ``<think>``) into thought, cue and answer, and check each."""
    ids = list(generated)
    ended = EOS_ID in ids
    ids = ids[: ids.index(EOS_ID)] if ended else ids
    if close_id not in ids:
        return ParsedThinking(ids, False, "", False, False, ended, is_degenerate(ids))
    cut = ids.index(close_id)
    thought, rest = ids[:cut], tokenizer.decode(ids[cut + 1 :])
    # the whitespace before a cue is layout the body gives no sign of (" Answer:" or "\nAnswer:"), so any is right
    cue_text, tail = cue.strip(), rest.lstrip()
    cue_ok = tail.startswith(cue_text)
    answer = tail[len(cue_text) :] if cue_ok and cue_text else rest
    return ParsedThinking(
        thought, True, answer, cue_ok, answer_format_ok(kind, answer), ended, is_degenerate(thought)
    )


def fluency(token_logprobs: Sequence[float]) -> float:
    """exp(mean log p) of the thought's tokens: 1 for a fully predictable thought, 0 for an empty one."""
    return math.exp(sum(token_logprobs) / len(token_logprobs)) if token_logprobs else 0.0


@dataclass(frozen=True)
class Coherence:
    semantic: float
    logical: float
    relevance: float
    fluency: float

    @property
    def score(self) -> float:
        parts = {
            "semantic": self.semantic,
            "logical": self.logical,
            "relevance": self.relevance,
            "fluency": self.fluency,
        }
        return sum(COHERENCE_WEIGHTS[k] * min(1.0, max(0.0, v)) for k, v in parts.items())
