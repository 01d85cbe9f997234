"""Pure metric functions on logits and counts, and the ``EvalResult`` every phase records (D6)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


@dataclass(frozen=True)
class EvalResult:
    """Held-out quality of one model: language-model loss and exact-match task accuracy."""

    loss: float  # mean cross-entropy per predicted token, in nats
    perplexity: float
    bits_per_byte: float  # total nats / ln 2 / UTF-8 bytes of the predicted text
    accuracy: float  # share of examples whose answer and final <eos> are all argmax-correct
    accuracy_by_level: dict[int, float]
    accuracy_by_kind: dict[str, float]
    n_tokens: int  # predicted tokens behind ``loss``
    n_examples: int  # examples behind ``accuracy``
    correct: tuple[bool, ...] = ()  # per example, in the held-out set's order (for intervals and tables)

    def to_dict(self) -> dict:
        return asdict(self)


def summed_token_nll(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """Sum of -log p(target) over positions whose target is not ``IGNORE_INDEX``, and their count.

    ``targets[b, t]`` is the token that should follow position ``t`` (already shifted).
    """
    flat_targets = targets.reshape(-1)
    nats = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), flat_targets, ignore_index=IGNORE_INDEX, reduction="sum"
    )
    return float(nats), int((flat_targets != IGNORE_INDEX).sum())


def exact_match(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per row: is the argmax right at every position that has a target (``[B]`` bool)?"""
    predicted = logits.argmax(dim=-1)
    scored = targets != IGNORE_INDEX
    right = (predicted == targets) | ~scored
    return right.all(dim=1) & scored.any(dim=1)


def masked_exact_match(logits: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor) -> torch.Tensor:
    """``exact_match`` from the logits of the scored positions only: ``logits`` is ``[N, V]`` for the N
    True entries of ``scored`` (``[B, T]``) in row-major order."""
    wrong = (logits.argmax(dim=-1) != targets[scored]).long()
    rows = scored.nonzero()[:, 0]
    wrong_per_row = torch.zeros(scored.shape[0], dtype=torch.long, device=scored.device).index_add_(0, rows, wrong)
    return (wrong_per_row == 0) & scored.any(dim=1)


def perplexity(mean_nll: float) -> float:
    """exp(loss), infinite instead of an overflow error for a hopeless model."""
    return math.exp(mean_nll) if mean_nll < 700 else math.inf


def bits_per_byte(total_nats: float, n_bytes: int) -> float:
    """Compression in bits per UTF-8 byte: comparable across tokenizers and vocabulary sizes."""
    return total_nats / math.log(2) / n_bytes if n_bytes else math.nan


def mean_by_group(correct: Sequence[bool], groups: Sequence[Hashable]) -> dict:
    """Share of True per group, groups in sorted order."""
    totals: dict[Hashable, list[int]] = defaultdict(lambda: [0, 0])
    for ok, group in zip(correct, groups, strict=True):
        totals[group][0] += int(ok)
        totals[group][1] += 1
    return {group: totals[group][0] / totals[group][1] for group in sorted(totals)}
