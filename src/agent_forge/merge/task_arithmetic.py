"""Task-arithmetic merges (stage 2 of a combo): DARE and TIES on deltas from the shared trunk (D2)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from agent_forge.merge.state import (
    StateDict,
    StateLike,
    check_compatible,
    compute_dtype,
    passthrough,
    validate_generator,
)


def dare(merged: StateLike, base: StateLike, p: float, generator: torch.Generator | None) -> StateDict:
    """DARE (Yu et al. 2023): drop each delta element with probability ``p``, rescale kept ones by 1/(1-p).

    ``delta = merged - base``; the result is ``base + mask * delta / (1 - p)``, unbiased: its expectation
    is ``merged``. The mask is drawn as ``rand < 1 - p`` per tensor in key order, which reproduces
    ``torch.bernoulli`` on the same seed (mergekit's random sparsifier); it is drawn on the generator's
    device, so a CPU generator gives the same mask for tensors on any device. This follows the paper; newer
    mergekit's ``dare_*`` methods rescale to match the L1 norm of the delta instead.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"DARE drop probability must lie in [0, 1), got {p}")
    keys = check_compatible([merged, base])
    if p == 0.0:
        return {key: tensor.clone() for key, tensor in merged.items()}
    rng = validate_generator(generator, "DARE")
    return {key: _dare_tensor(key, merged[key], base[key], p, rng) for key in keys}


def _dare_tensor(key: str, merged: Tensor, base: Tensor, p: float, generator: torch.Generator) -> Tensor:
    if not merged.is_floating_point():
        return passthrough(key, [merged, base])
    dtype = compute_dtype(merged.dtype)
    base_work = base.to(dtype)
    delta = merged.to(dtype) - base_work
    uniform = torch.rand(delta.shape, generator=generator, device=generator.device, dtype=dtype)
    dropped = (uniform >= 1.0 - p).to(delta.device)
    delta.masked_fill_(dropped, 0.0).mul_(1.0 / (1.0 - p))
    return delta.add_(base_work).to(merged.dtype)


def ties(
    models: StateLike | Sequence[StateLike], base: StateLike, k: float = 0.2, *, scale: float = 1.0
) -> StateDict:
    """TIES (Yadav et al. 2023): trim each delta to its top-``k`` share by magnitude, elect a sign per
    element as the sign of the summed trimmed deltas, and average only the deltas that agree (disjoint
    mean); the result is ``base + scale * merged_delta``.

    ``models`` is several task models (deltas against ``base``) or one already merged model, which is what
    the combo pipeline passes: with one delta, election and disjoint mean keep the trimmed delta as is.
    Deltas are unweighted, as in the paper (mergekit elects on weighted deltas; equal with unit weights).
    An element whose trimmed deltas sum to exactly zero gets no update (the paper's sgn(0) = 0; mergekit
    picks +). Each delta keeps exactly ``max(1, int(k * numel))`` elements, mergekit's count; among
    magnitudes tied with the threshold the lowest indices are kept.
    """
    group = [models] if isinstance(models, Mapping) else list(models)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"TIES k (share of each delta kept) must lie in (0, 1], got {k}")
    keys = check_compatible([*group, base])
    return {key: _ties_tensor(key, [m[key] for m in group], base[key], k, scale) for key in keys}


def _ties_tensor(key: str, tensors: list[Tensor], base: Tensor, k: float, scale: float) -> Tensor:
    if not base.is_floating_point():
        return passthrough(key, [*tensors, base])
    dtype = compute_dtype(base.dtype)
    base_work = base.to(dtype)
    deltas = torch.empty((len(tensors), *base.shape), dtype=dtype, device=base.device)
    for index, tensor in enumerate(tensors):
        torch.sub(tensor.to(dtype), base_work, out=deltas[index])
    trim_to_top_magnitude(deltas, k)
    merged_delta = disjoint_mean(deltas)
    return base_work.add(merged_delta, alpha=scale).to(base.dtype)


def trim_to_top_magnitude(deltas: Tensor, k: float) -> Tensor:
    """Zero, in place, all but exactly ``max(1, int(k * n))`` largest-magnitude entries of each row.

    ``deltas`` has one row per model along dim 0. A threshold from ``kthvalue`` selects in linear time,
    faster than sorting or ``topk`` on multi-million-element tensors. Entries tied with the threshold (common
    in bf16) are kept in index order until the count is reached, so the choice is deterministic and the
    count exact (mergekit keeps the first k of an argsort).
    """
    flat = deltas.reshape(deltas.shape[0], -1)
    count = flat.shape[1]
    keep = max(1, int(k * count))
    if keep >= count or count == 0:
        return deltas
    magnitude = flat.abs()
    threshold = magnitude.kthvalue(count - keep + 1, dim=1, keepdim=True).values
    greater = magnitude > threshold
    tied = magnitude == threshold
    room = keep - greater.sum(dim=1, keepdim=True)  # how many tied entries still fit, per row
    kept = greater | (tied & (tied.cumsum(dim=1) <= room))
    flat.masked_fill_(~kept, 0.0)
    return deltas


def disjoint_mean(trimmed: Tensor) -> Tensor:
    """Elect sign(sum over models) per element and average only the entries with that sign.

    Consumes ``trimmed`` (entries that disagree are zeroed in place) to avoid a second full-size copy.
    A single delta always agrees with its own sign, so it is returned as is (the combo pipeline's case).
    """
    if trimmed.shape[0] == 1:
        return trimmed[0]
    elected = trimmed.sum(dim=0).sign()
    agrees = (trimmed.sign() == elected) & (elected != 0)
    trimmed.mul_(agrees)
    count = agrees.sum(dim=0).clamp_(min=1)
    return trimmed.sum(dim=0).div_(count)
