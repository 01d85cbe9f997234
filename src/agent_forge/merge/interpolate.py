"""Interpolation merges (stage 1 of a combo): weighted linear average and spherical interpolation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from agent_forge.merge.state import StateDict, StateLike, check_compatible, compute_dtype, passthrough

DEFAULT_DOT_THRESHOLD = 0.9995  # mergekit's value: beyond it the angle is too small for a stable sin()


def linear(models: Sequence[StateLike], weights: Sequence[float] | None = None) -> StateDict:
    """Weighted average of ``models``; weights are divided by their sum (equal weights when None).

    Normalising the weights makes the result a convex combination, as in mergekit's ``linear`` with
    ``normalize=True``, so a constant tensor shared by all models stays that constant.
    """
    keys = check_compatible(models)
    coefficients = _normalised(weights, len(models))
    return {key: weighted_sum(key, [m[key] for m in models], coefficients) for key in keys}


def _normalised(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0 / count] * count
    if len(weights) != count:
        raise ValueError(f"got {len(weights)} weights for {count} models")
    total = math.fsum(weights)
    if not all(math.isfinite(w) for w in weights) or abs(total) < 1e-12:
        raise ValueError(f"weights must be finite and not sum to zero, got {list(weights)}")
    return [w / total for w in weights]


def weighted_sum(key: str, tensors: Sequence[Tensor], coefficients: Sequence[float]) -> Tensor:
    """Sum of ``coefficient * tensor`` in float32/float64, returned in the input dtype."""
    first = tensors[0]
    if not first.is_floating_point():
        return passthrough(key, tensors)
    dtype = compute_dtype(first.dtype)
    total = first.to(dtype) * coefficients[0]
    for tensor, coefficient in zip(tensors[1:], coefficients[1:], strict=True):
        total.add_(tensor.to(dtype), alpha=coefficient)
    return total.to(first.dtype)


def slerp_coefficients(
    x: Tensor, y: Tensor, t: float, dot_threshold: float = DEFAULT_DOT_THRESHOLD, eps: float = 1e-8
) -> tuple[float, float, bool]:
    """Coefficients ``(c_x, c_y, is_linear)`` so that ``slerp(x, y, t) = c_x * x + c_y * y``.

    Falls back to linear interpolation when ``|cos| > dot_threshold`` (near-parallel or antipodal, as in
    mergekit) or when either vector has no direction (norm below ``eps``; mergekit would then use a
    right angle, which shrinks the result instead of interpolating).
    """
    norm_x = torch.linalg.vector_norm(x).item()
    norm_y = torch.linalg.vector_norm(y).item()
    if norm_x <= eps or norm_y <= eps:
        return 1.0 - t, t, True
    cosine = max(-1.0, min(1.0, torch.dot(x, y).item() / (norm_x * norm_y)))
    if abs(cosine) > dot_threshold:
        return 1.0 - t, t, True
    theta = math.acos(cosine)
    sin_theta = math.sin(theta)
    return math.sin((1.0 - t) * theta) / sin_theta, math.sin(t * theta) / sin_theta, False


def slerp_tensor(
    a: Tensor, b: Tensor, t: float, dot_threshold: float = DEFAULT_DOT_THRESHOLD, eps: float = 1e-8
) -> Tensor:
    """SLERP of two tensors treated as single flattened vectors; t=0 gives ``a``, t=1 gives ``b``."""
    if not a.is_floating_point():
        return passthrough("slerp", [a, b])
    dtype = compute_dtype(a.dtype)
    x = a.reshape(-1).to(dtype)
    y = b.reshape(-1).to(dtype)
    coef_x, coef_y, _ = slerp_coefficients(x, y, t, dot_threshold, eps)
    result = x * coef_x
    result.add_(y, alpha=coef_y)
    return result.reshape(a.shape).to(a.dtype)


def slerp(a: StateLike, b: StateLike, t: float, dot_threshold: float = DEFAULT_DOT_THRESHOLD) -> StateDict:
    """Per-tensor SLERP between two state dicts: keeps the norm profile that averaging shrinks."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"slerp t must lie in [0, 1], got {t}")
    keys = check_compatible([a, b])
    return {key: slerp_tensor(a[key], b[key], t, dot_threshold) for key in keys}


def slerp_chain(models: Sequence[StateLike], dot_threshold: float = DEFAULT_DOT_THRESHOLD) -> StateDict:
    """Chained pairwise SLERP ``((m1 ⊕ m2) ⊕ m3) ...`` giving every model an equal share.

    Step i (1-based, i >= 2) folds model i into the running result with t = 1/i: for three models t = 1/2
    then t = 1/3. Where SLERP falls back to linear interpolation this is exactly the mean, since
    (1 - 1/i) * (1/(i-1)) = 1/i for the earlier models and 1/i for the new one. The spec's sketch uses
    t = 1/2 twice, which would give the third model half the weight.
    """
    if len(models) < 2:
        raise ValueError(f"slerp_chain needs at least two models, got {len(models)}")
    check_compatible(models)
    running: StateLike = models[0]
    for index, model in enumerate(models[1:], start=2):
        running = slerp(running, model, 1.0 / index, dot_threshold)
    return dict(running)
