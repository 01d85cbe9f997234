"""Bake data: continuations sampled from the prompted frozen teacher, its log-probabilities, batches.

A row is a query ``q`` (a task prompt) and a continuation ``x`` the teacher sampled after ``<bos> u q``.
The teacher scores ``<bos> u q x``, the student ``<bos> q x``; position ``len(<bos> [u] q) - 1 + j``
predicts ``x_j`` in both. Rows are right-padded: the model is causal, so trailing padding changes no
scored position and no attention mask is needed. The teacher's log-probabilities are computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.baking.loss import token_kl
from agent_forge.data.tokenizer import BOS_ID, PAD_ID
from agent_forge.engine import InsertHook, decode


@dataclass
class BakeSet:
    """Queries, the prompt they were sampled under, and one sampled continuation per row."""

    prompt: list[int]
    queries: list[list[int]]
    continuations: list[list[int]]
    sampled: list[list[bool]] | None = None  # per token: chosen by the teacher (False: inserted, not scored)
    anchored: list[bool] | None = None  # per row: the teacher read it without the prompt (a KL anchor)
    hard: list[list[bool]] | None = None  # per token: a reference token, scored as a hard target (cross-entropy)

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def width(self) -> int:
        return max((len(x) for x in self.continuations), default=0)

    def rows(self, indices: Sequence[int], prompted: bool) -> tuple[list[list[int]], list[int]]:
        """Token rows and, per row, the index of the position that predicts the first continuation token."""
        rows = [[BOS_ID, *self.prefix(i, prompted), *self.queries[i], *self.continuations[i]] for i in indices]
        starts = [len(self.prefix(i, prompted)) + len(self.queries[i]) for i in indices]
        return rows, starts

    def prefix(self, row: int, prompted: bool) -> list[int]:
        """What the reader of ``row`` sees before its query: the prompt for the teacher, unless anchored."""
        return self.prompt if prompted and not (self.anchored and self.anchored[row]) else []


def sample_bake_set(teacher: nn.Module, prompt: Sequence[int], queries: Sequence[Sequence[int]],
                    samples_per_query: int, length: int, generator: torch.Generator,
                    temperature: float = 1.0, hook: InsertHook | None = None,
                    anchored: Sequence[bool] | None = None) -> BakeSet:
    """``samples_per_query`` continuations of ``length`` teacher tokens (fewer after ``<eos>``) per query;
    ``hook`` may insert tokens (a tool's result, an answer cue), which are read but never scored. Queries
    flagged in ``anchored`` are continued without the prompt: the teacher's own behaviour, held by the bake."""
    flags = [bool(a) for a in (anchored or [False] * len(queries)) for _ in range(samples_per_query)]
    rows = [list(q) for q in queries for _ in range(samples_per_query)]
    heads = [[BOS_ID, *([] if flag else prompt), *q] for q, flag in zip(rows, flags, strict=True)]
    decoded = decode(teacher, heads, length, temperature=temperature, generator=generator, hook=hook)
    return BakeSet(list(prompt), rows, [d.tokens for d in decoded], [d.sampled for d in decoded],
                   flags if any(flags) else None)


Piece = tuple[list[int], bool]  # ids of a reference demonstration and whether the model writes them (else inserted)


@dataclass(frozen=True)
class References:
    """Reference demonstrations for some queries (``of(query)``: its pieces, or None), each written after the
    teacher's first ``open_id``."""

    of: Callable[[Sequence[int]], Sequence[Piece] | None]
    open_id: int


def use_references(bake: BakeSet, references: Sequence[Sequence[Piece] | None], open_id: int) -> int:
    """Rewrite each row that has a reference (``references[row]``, or None) after its first ``open_id``
    (``<think>``): the teacher's own tokens up to there stay, then the reference's pieces follow, the ones the
    model writes scored as hard targets, the inserted ones (tool results, the cue) read only. Where the
    teacher opened no thought, the row is ``open_id`` and the reference, all of it the reference's. Returns
    how many rows were rewritten."""
    sampled = bake.sampled or [[True] * len(c) for c in bake.continuations]
    hard = bake.hard or [[False] * len(c) for c in bake.continuations]
    rewritten = 0
    for row, pieces in enumerate(references):
        if pieces is None:
            continue
        tokens = bake.continuations[row]
        opened = open_id in tokens
        keep = tokens.index(open_id) + 1 if opened else 0
        pieces = list(pieces) if opened else [([open_id], True), *pieces]
        ids = [i for piece, _ in pieces for i in piece]
        written = [flag for piece, flag in pieces for _ in piece]
        bake.continuations[row] = tokens[:keep] + ids
        sampled[row] = sampled[row][:keep] + written
        hard[row] = [False] * keep + written
        rewritten += 1
    bake.sampled, bake.hard = sampled, hard
    return rewritten


def hard_targets(teacher_lp: torch.Tensor, bake: BakeSet) -> torch.Tensor:
    """The teacher's (N, X, V) log-probabilities over ``bake`` with each hard-target position made one-hot on
    the reference token, so the KL there is the student's cross-entropy on it (done once, before training)."""
    if bake.hard is None:
        return teacher_lp
    targets = teacher_lp.clone()
    for row, flags in enumerate(bake.hard):
        for j in (j for j, is_hard in enumerate(flags) if is_hard):
            targets[row, j] = -1e4  # exp underflows to exactly 0: outside the support
            targets[row, j, bake.continuations[row][j]] = 0.0
    return targets


def _padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], dtype=torch.long, device=device)


def scored_index(bake: BakeSet, indices: Sequence[int], starts: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """(B, X) positions to read logits at and the (B, X) mask of real continuation tokens."""
    width = bake.width
    offsets = torch.arange(width)
    lengths = torch.tensor([len(bake.continuations[i]) for i in indices])
    mask = offsets[None, :] < lengths[:, None]
    if bake.sampled is not None:  # inserted tokens (tool results, cues) are the runtime's, not the teacher's
        chosen = [bake.sampled[i] + [False] * (width - len(bake.sampled[i])) for i in indices]
        mask &= torch.tensor(chosen, dtype=torch.bool).reshape(mask.shape)
    index = torch.tensor(list(starts))[:, None] + offsets[None, :]
    return index, mask


def gather_positions(logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """logits (B, L, V) at positions index (B, X), clamped into the row: (B, X, V)."""
    index = index.clamp(max=logits.shape[1] - 1).to(logits.device)
    return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))


@torch.no_grad()
def teacher_logprobs(teacher: nn.Module, bake: BakeSet, batch_size: int) -> torch.Tensor:
    """(N, X, V) float32 log-probabilities of the prompted teacher at every continuation position."""
    was_training = teacher.training
    teacher.eval()
    device = next(teacher.parameters()).device
    parts = []
    for first in range(0, len(bake), batch_size):
        indices = list(range(first, min(first + batch_size, len(bake))))
        rows, starts = bake.rows(indices, prompted=True)
        index, _ = scored_index(bake, indices, starts)
        logits = teacher(input_ids=_padded(rows, device)).logits
        parts.append(F.log_softmax(gather_positions(logits, index).float(), dim=-1).cpu())
    teacher.train(was_training)
    return torch.cat(parts)


def make_batch(bake: BakeSet, teacher_lp: torch.Tensor, indices: Sequence[int]) -> dict[str, torch.Tensor]:
    """The student's inputs, where to score them, the mask and the teacher's log-probabilities."""
    rows, starts = bake.rows(indices, prompted=False)
    index, mask = scored_index(bake, indices, starts)
    picked = torch.as_tensor(list(indices), dtype=torch.long)
    return {"input_ids": _padded(rows, torch.device("cpu")), "index": index, "mask": mask,
            "teacher": teacher_lp.index_select(0, picked)}


def batch_kl(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The bake loss of one batch: the student reads the rows without the prompt."""
    logits = model(input_ids=batch["input_ids"]).logits
    student = gather_positions(logits, batch["index"])
    return token_kl(batch["teacher"].to(student.device), student, batch["mask"].to(student.device))


@torch.no_grad()
def mean_kl(model: nn.Module, bake: BakeSet, teacher_lp: torch.Tensor, batch_size: int) -> float:
    """Token-weighted mean KL(prompted teacher || model without the prompt) over a whole bake set."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, tokens = 0.0, 0.0
    for first in range(0, len(bake), batch_size):
        indices = list(range(first, min(first + batch_size, len(bake))))
        batch = {k: v.to(device) for k, v in make_batch(bake, teacher_lp, indices).items()}
        count = float(batch["mask"].sum())
        total += float(batch_kl(model, batch)) * count
        tokens += count
    model.train(was_training)
    return total / max(tokens, 1.0)
