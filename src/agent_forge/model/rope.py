"""Partial rotary position embedding.

Only the first `rotary_dim` dims of each head are rotated, so QK-clip can rescale the non-rotary part of
the keys while leaving the rotary key part alone. The tables are computed from positions on the fly
(no buffers), which keeps loading from meta-device construction and ONNX export simple.
"""

from __future__ import annotations

import torch


def rotary_tables(
    positions: torch.Tensor, rotary_dim: int, theta: float, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape positions.shape + (rotary_dim,) in the rotate-half layout."""
    half = rotary_dim // 2
    exponents = torch.arange(half, device=positions.device, dtype=torch.float32) / half
    inv_freq = 1.0 / (theta**exponents)
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first cos.shape[-1] dims of x (..., seq, head_dim); cos/sin broadcast on the rest."""
    rotary_dim = cos.shape[-1]
    rot, rest = x[..., :rotary_dim], x[..., rotary_dim:]
    first, second = rot.chunk(2, dim=-1)
    rotated = torch.cat((-second, first), dim=-1)
    return torch.cat((rot * cos + rotated * sin, rest), dim=-1)
