"""Newton-Schulz orthogonalisation for Muon, with the arithmetic of ``torch.optim.Muon``.

The quintic iteration pushes every singular value of the (Frobenius-normalised) matrix towards 1 without an
SVD. It deliberately overshoots: with the coefficients (3.4445, -4.7750, 2.0315) the singular values land in
a band of roughly 0.68-1.2 rather than on 1, which trains as well as the exact polar factor (Jordan 2024).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

DTYPES: dict[str, torch.dtype] = {
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float64": torch.float64,
}


def orthogonalize(
    matrix: Tensor,
    steps: int,
    coefficients: tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
    eps: float = 1e-7,
    dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    """Approximate ``U V^T`` of ``matrix = U S V^T`` in ``dtype``; the input is never modified.

    Dividing by the Frobenius norm first bounds the spectral norm by 1, the region where the iteration
    converges. A tall matrix is transposed so the Gram matrix is the small one (min(A, B) squared).
    """
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalize needs a 2-D matrix, got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    tall = matrix.size(0) > matrix.size(1)
    x = matrix.to(dtype)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        polynomial = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, polynomial, x, beta=a)
    return x.T if tall else x


def match_rms_adamw_scale(shape: torch.Size | tuple[int, ...]) -> float:
    """Factor on the lr so an orthogonal update has AdamW's typical RMS of ~0.2 (Moonlight, Liu et al. 2025).

    An (A, B) matrix with unit singular values has RMS ``1/sqrt(max(A, B))``; multiplying by
    ``0.2 * sqrt(max(A, B))`` makes the update's RMS 0.2 whatever the shape, so AdamW's lr and weight
    decay carry over.
    """
    rows, cols = shape[0], shape[1]
    return 0.2 * math.sqrt(max(rows, cols))
