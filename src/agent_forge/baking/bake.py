"""One bake's data and schedule: sample from the prompted teacher once, then serve addressed batches.

Batches are addressed by position (epoch-seeded permutations of the training rows), so a training loop
that resumes at position p sees exactly the batches an uninterrupted run would have seen. Ternary
layers frozen by an earlier phase are released for the bake (their forward would otherwise ignore
every update) and frozen again afterwards from the baked shadow weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn

from agent_forge.baking.data import (
    BakeSet,
    References,
    hard_targets,
    make_batch,
    sample_bake_set,
    teacher_logprobs,
    use_references,
)
from agent_forge.engine import InsertHook
from agent_forge.quant.bitlinear import bitlinear_modules, ternary_state


@dataclass
class BakeData:
    """Training and held-out continuations of one prompt, with the teacher's log-probabilities."""

    train: BakeSet
    train_lp: torch.Tensor
    heldout: BakeSet
    heldout_lp: torch.Tensor
    seed: int

    @property
    def references(self) -> int:
        """Training rows rewritten as reference demonstrations (those with a hard target)."""
        return sum(map(any, self.train.hard or []))

    def batch(self, position: int, batch_size: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        """Batch number ``position`` (this rank's share of it under data parallelism)."""
        indices = schedule_indices(len(self.train), position, batch_size, self.seed)
        return make_batch(self.train, self.train_lp, indices[rank::world] or indices[:1])


@lru_cache(maxsize=8)
def _permutation(n: int, seed: int, epoch: int) -> tuple[int, ...]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return tuple(torch.randperm(n, generator=generator).tolist())


def schedule_indices(n: int, position: int, batch_size: int, seed: int) -> list[int]:
    """Rows of batch ``position``: a fresh seeded permutation of the ``n`` rows every epoch."""
    picked = []
    for k in range(position * batch_size, (position + 1) * batch_size):
        epoch, within = divmod(k, n)
        picked.append(_permutation(n, seed, epoch)[within])
    return picked


def prepare_bake(teacher: nn.Module, prompt: Sequence[int], train_queries: Sequence[Sequence[int]],
                 heldout_queries: Sequence[Sequence[int]], samples_per_query: int, length: int, seed: int,
                 batch_size: int, temperature: float = 1.0,
                 make_hook: Callable[[list[list[int]]], InsertHook] | None = None,
                 anchored: Callable[[Sequence[int]], bool] | None = None,
                 references: References | None = None) -> BakeData:
    """Sample continuations from ``teacher`` reading ``prompt`` (one decoding batch) and score them once;
    ``make_hook`` builds the decoding hook for the list of queries as decoded (e.g. the tool runtime); the
    queries ``anchored`` picks are continued and scored without the prompt (the bake holds them as they are);
    training rows with a reference continue with it, as hard targets (held-out rows keep the teacher's)."""
    generator = torch.Generator().manual_seed(seed)
    queries = [*(list(q) for q in train_queries for _ in range(samples_per_query)), *map(list, heldout_queries)]
    hook = make_hook(queries) if make_hook is not None else None
    flags = [anchored(q) for q in queries] if anchored is not None else None
    both = sample_bake_set(teacher, prompt, queries, 1, length, generator, temperature, hook, flags)
    cut = len(train_queries) * samples_per_query
    if references is not None:
        use_references(both, [references.of(q) if row < cut else None for row, q in enumerate(queries)],
                       references.open_id)
    train, heldout = _cut(both, cut)
    return BakeData(train, hard_targets(teacher_logprobs(teacher, train, batch_size), train), heldout,
                    teacher_logprobs(teacher, heldout, batch_size), seed)


def _cut(both: BakeSet, cut: int) -> tuple[BakeSet, BakeSet]:
    """Rows before ``cut`` and the rest, each a BakeSet."""
    sampled = both.sampled or [[True] * len(c) for c in both.continuations]
    marks, hard = both.anchored, both.hard  # None when no query is anchored / no row has a reference
    parts = []
    for rows in (slice(None, cut), slice(cut, None)):
        parts.append(BakeSet(both.prompt, both.queries[rows], both.continuations[rows], sampled[rows],
                             marks[rows] if marks else None, hard[rows] if hard else None))
    return parts[0], parts[1]


def release_ternary(model: nn.Module) -> list[str]:
    """Unfreeze BitLinear layers whose ternary state is fixed; returns their names for ``refreeze``."""
    frozen = [name for name, layer in bitlinear_modules(model).items() if layer.frozen]
    for name in frozen:
        bitlinear_modules(model)[name].unfreeze()
    return frozen


def refreeze(model: nn.Module, names: Sequence[str]) -> None:
    layers = bitlinear_modules(model)
    for name in names:
        layers[name].freeze()


def ternary_flip_share(before: dict[str, torch.Tensor], model: nn.Module) -> float:
    """Share of ternary weights (over all BitLinear layers) whose value changed since ``before``."""
    after = {name: t.values for name, t in ternary_state(model).items()}
    total = sum(v.numel() for v in before.values())
    changed = sum(int((after[name].cpu() != values.cpu()).sum()) for name, values in before.items())
    return changed / total if total else 0.0


def ternary_values(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every BitLinear's current ternary values (int8 in {-1, 0, 1})."""
    return {name: t.values.detach().cpu().clone() for name, t in ternary_state(model).items()}
