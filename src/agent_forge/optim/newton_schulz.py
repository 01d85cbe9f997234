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

    ``matrix`` is (A, B) or a stack (N, A, B) of same-shaped matrices, each orthogonalised on its own: a
    stack runs every iteration as one batched matmul, which on a CPU costs little more than one small
    matrix (the per-call overhead dominates at these sizes). Dividing each matrix by its Frobenius norm
    first bounds its spectral norm by 1, the region where the iteration converges. Tall matrices are
    transposed so the Gram matrix is the small one (min(A, B) squared).
    """
    if matrix.ndim not in (2, 3):
        raise ValueError(f"orthogonalize needs a 2-D matrix or a 3-D stack, got shape {tuple(matrix.shape)}")
    a, b, c = coefficients
    tall = matrix.size(-2) > matrix.size(-1)
    x = matrix.to(dtype)
    if tall:
        x = x.mT
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=eps)
    multiply_add = torch.addmm if x.ndim == 2 else torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        polynomial = multiply_add(gram, gram, gram, beta=b, alpha=c)
        x = multiply_add(x, polynomial, x, beta=a)
    return x.mT if tall else x


def match_rms_adamw_scale(shape: torch.Size | tuple[int, ...]) -> float:
    """Factor on the lr so an orthogonal update has AdamW's typical RMS of ~0.2 (Moonlight, Liu et al. 2025).

    An (A, B) matrix with unit singular values has RMS ``1/sqrt(max(A, B))``; multiplying by
    ``0.2 * sqrt(max(A, B))`` makes the update's RMS 0.2 whatever the shape, so AdamW's lr and weight
    decay carry over.
    """
    rows, cols = shape[0], shape[1]
    return 0.2 * math.sqrt(max(rows, cols))
