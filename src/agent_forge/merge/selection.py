"""Selection merges (stage 3 of a combo): FrankenMerge (layer-wise choice), DFS (Fisher-weighted fusion)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor

from agent_forge.merge.interpolate import weighted_sum
from agent_forge.merge.state import (
    StateDict,
    StateLike,
    check_compatible,
    compute_dtype,
    validate_generator,
)

LayerKeyFn = Callable[[str], str | None]
FrankenMode = Literal["best", "weighted"]
_LAYER_INDEX = re.compile(r"^(.*?\.\d+\.)")


def default_layer_key(name: str) -> str | None:
    """Layer group of a parameter: its name up to the first numeric component ("model.layers.3.").

    Names without a numeric component (embeddings, final norm, head) belong to no layer: None.
    """
    match = _LAYER_INDEX.match(name)
    return match.group(1) if match else None


def plan_layer_sources(
    keys: Sequence[str],
    fitness: Sequence[float],
    layer_key_fn: LayerKeyFn = default_layer_key,
    generator: torch.Generator | None = None,
    mode: FrankenMode = "best",
) -> dict[str | None, int]:
    """Which candidate each layer group comes from; the ``None`` group (non-layer tensors) is the best.

    Kept separate from :func:`frankenmerge` so a caller can log the plan without copying tensors.
    """
    scores = _checked_scores(fitness)
    best = max(range(len(scores)), key=scores.__getitem__)
    groups = list(dict.fromkeys(g for g in map(layer_key_fn, keys) if g is not None))
    if mode == "best":
        chosen = [best] * len(groups)
    elif mode == "weighted":
        chosen = _sample_proportional(scores, len(groups), generator)
    else:
        raise ValueError(f"frankenmerge mode must be 'best' or 'weighted', got {mode!r}")
    return {None: best, **dict(zip(groups, chosen, strict=True))}


def _checked_scores(fitness: Sequence[float]) -> list[float]:
    scores = [float(f) for f in fitness]
    if not scores or not all(math.isfinite(s) for s in scores):
        raise ValueError(f"fitness must be a non-empty list of finite numbers, got {list(fitness)}")
    return scores


def _sample_proportional(scores: list[float], count: int, generator: torch.Generator | None) -> list[int]:
    if min(scores) < 0 or sum(scores) <= 0:
        raise ValueError(f"weighted frankenmerge needs non-negative fitness with a positive sum: {scores}")
    rng = validate_generator(generator, "weighted frankenmerge")
    if count == 0:
        return []
    probabilities = torch.tensor(scores, dtype=torch.float64)
    return torch.multinomial(probabilities, count, replacement=True, generator=rng).tolist()


def frankenmerge(
    candidates: Sequence[StateLike],
    fitness: Sequence[float],
    layer_key_fn: LayerKeyFn = default_layer_key,
    generator: torch.Generator | None = None,
    *,
    mode: FrankenMode = "best",
) -> StateDict:
    """Assemble a model layer by layer from ``candidates`` (one fitness score each, higher is better).

    ``mode="best"`` takes every layer from the fittest candidate (the spec's rule); ``"weighted"`` draws
    each layer's source with probability proportional to fitness from ``generator``. Non-layer tensors
    always come from the fittest candidate. Tensors are copied so the result never aliases an input.
    """
    keys = check_compatible(candidates)
    if len(fitness) != len(candidates):
        raise ValueError(f"got {len(fitness)} fitness scores for {len(candidates)} candidates")
    plan = plan_layer_sources(keys, fitness, layer_key_fn, generator, mode)
    return {key: candidates[plan[layer_key_fn(key)]][key].clone() for key in keys}


def dfs(candidates: Sequence[StateLike], importance: Sequence[Mapping[str, Tensor]]) -> StateDict:
    """Importance-weighted fusion (the spec's DFS), implemented as Fisher merging (Matena & Raffel 2022).

    The score is the diagonal Fisher information of each candidate, estimated from squared gradients of
    the loss on held-out data (see :func:`agent_forge.merge.importance.fisher_importance`). Per element,
    ``result = sum_i F_i * theta_i / sum_i F_i``; where every candidate's score is zero the element is
    the plain mean. Keys absent from every importance dict (buffers) are averaged.
    """
    keys = check_compatible(candidates)
    if len(importance) != len(candidates):
        raise ValueError(f"got {len(importance)} importance dicts for {len(candidates)} candidates")
    equal = [1.0 / len(candidates)] * len(candidates)
    merged: StateDict = {}
    for key in keys:
        tensors = [c[key] for c in candidates]
        present = [key in scores for scores in importance]
        if not any(present) or not tensors[0].is_floating_point():
            merged[key] = weighted_sum(key, tensors, equal)
        elif all(present):
            merged[key] = _fisher_weighted(key, tensors, [scores[key] for scores in importance])
        else:
            raise ValueError(f"{key}: importance given for some candidates but not all")
    return merged


def _fisher_weighted(key: str, tensors: list[Tensor], fishers: list[Tensor]) -> Tensor:
    dtype = compute_dtype(tensors[0].dtype)
    numerator = torch.zeros(tensors[0].shape, dtype=dtype, device=tensors[0].device)
    denominator = torch.zeros_like(numerator)
    for tensor, fisher in zip(tensors, fishers, strict=True):
        if fisher.shape != tensor.shape:
            raise ValueError(f"{key}: importance shape {tuple(fisher.shape)} != {tuple(tensor.shape)}")
        score = fisher.to(device=tensor.device, dtype=dtype)
        if score.numel() and score.min().item() < 0:
            raise ValueError(f"{key}: importance must be non-negative (squared gradients)")
        numerator.addcmul_(score, tensor.to(dtype))
        denominator.add_(score)
    mean = weighted_sum(key, tensors, [1.0 / len(tensors)] * len(tensors)).to(dtype)
    fused = torch.where(denominator > 0, numerator / denominator, mean)
    return fused.to(tensors[0].dtype)
