"""Uniform scalar quantization around a row codebook, with steps set by row importance (entropy coded after).

A matrix ``(R, C)`` (an embedding: one row per token) is coded in three parts:

1. a codebook of ``clusters`` centroid rows (k-means over the rows, fp16) and each row's nearest centroid:
   rows that never learned anything (the tokens a small corpus never uses all drift the same way) sit next
   to their centroid and cost almost nothing below;
2. what each row differs from its centroid, rounded to a uniform grid: integers ``round(r / step_r)``;
3. the step of row ``r`` is ``base * 2**(e_r / 2)`` with ``e_r = clamp(round(log2(mean(q) / q_r)), 0,
   max_exponent)`` for a row importance ``q`` (how often the token is read, say): for a squared error
   weighted by ``q`` the best step of a row scales as ``q_r ** -0.5``, and ``max_exponent`` caps how coarse
   a rare row may get. ``base`` is ``step`` times the importance-weighted RMS of the differences, so
   ``step`` is free of the tensor's scale. Without an importance every row gets ``base``.

Unlike fixed-rate 4-bit blocks (GGUF Q4_0), nothing here has a fixed width: the integers are entropy coded,
so a finer grid costs bits only where the values need them ("entropy-coded scalar quantization", the
textbook result that uniform steps plus an entropy coder come within 0.25 bit a weight of the
rate-distortion bound at high rates). Decoding is one gather and one multiply-add.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from agent_forge.quant.vptq import kmeans, nearest


@dataclass(frozen=True)
class UniformConfig:
    """Grid ``step`` (relative to the weighted RMS of the differences), codebook size, coarsest step."""

    step: float = 0.3
    clusters: int = 4
    max_exponent: int = 4  # a row's step is at most base * 2**(max_exponent / 2)
    iterations: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.step > 0 or self.clusters < 1 or not 0 <= self.max_exponent <= 15 or self.iterations < 0:
            raise ValueError("step must be > 0, clusters >= 1, max_exponent 0..15 and iterations >= 0")


def _rows(weight: Tensor) -> Tensor:
    """The ``(R, C)`` float32 view of a tensor: first dimension as rows (a 1-D tensor is one column)."""
    rows = int(weight.shape[0]) if weight.dim() else 1
    return weight.detach().float().reshape(rows, -1)


def row_exponents(importance: Tensor | None, rows: int, max_exponent: int) -> Tensor:
    """``e_r`` of the module docstring: 0 for rows at or above the mean importance, more for rarer ones."""
    if importance is None:
        return torch.zeros(rows, dtype=torch.long)
    weights = importance.detach().double().reshape(-1)
    if weights.numel() != rows or bool((weights < 0).any()) or not bool(torch.isfinite(weights).all()):
        raise ValueError(f"importance needs {rows} finite non-negative values, one per row")
    relative = weights / weights.mean().clamp_min(1e-30)
    return torch.clamp(torch.round(-torch.log2(relative.clamp_min(1e-30))), 0, max_exponent).long()


def row_steps(base: float, exponents: Tensor) -> Tensor:
    """Step of every row, ``base * 2**(e/2)`` in float32 (the encoder and the decoder share this)."""
    return torch.tensor(base, dtype=torch.float32) * torch.exp2(exponents.float() / 2.0)


@dataclass(frozen=True)
class UniformEncoded:
    """A tensor as centroids, row assignments, row step exponents and integer grid positions."""

    shape: tuple[int, ...]
    config: UniformConfig
    base: float
    centroids: Tensor  # (k, C) float16
    assignment: Tensor  # (R,) int64
    exponents: Tensor  # (R,) int64
    values: Tensor  # (R, C) int64, grid positions of the differences

    def params(self) -> dict:
        low = int(self.values.min()) if self.values.numel() else 0
        return {"config": asdict(self.config), "base": self.base, "low": low}

    def symbol_streams(self) -> dict[str, tuple[np.ndarray, int]]:
        """Unsigned symbol streams and their bit widths (centroids as raw fp16 bit patterns)."""
        low = self.params()["low"]
        shifted = (self.values - low).reshape(-1).numpy()
        width = max(1, int(shifted.max()).bit_length()) if shifted.size else 1
        centroids = self.centroids.reshape(-1).view(torch.int16).numpy().view(np.uint16)
        return {
            "centroids": (centroids, 16),
            "assignment": (self.assignment.numpy(), max(1, (self.config.clusters - 1).bit_length())),
            "exponents": (self.exponents.numpy(), max(1, self.config.max_exponent.bit_length())),
            "values": (shifted, width),
        }

    @classmethod
    def from_streams(cls, shape: Sequence[int], params: dict, streams: dict[str, np.ndarray]) -> UniformEncoded:
        cfg = UniformConfig(**params["config"])
        shape = tuple(int(s) for s in shape)
        rows = shape[0] if shape else 1
        centroids = torch.from_numpy(streams["centroids"].astype(np.uint16).view(np.float16).copy())
        values = torch.from_numpy(streams["values"].astype(np.int64)) + int(params["low"])
        return cls(
            shape=shape,
            config=cfg,
            base=float(params["base"]),
            centroids=centroids.reshape(cfg.clusters, -1),
            assignment=torch.from_numpy(streams["assignment"].astype(np.int64)),
            exponents=torch.from_numpy(streams["exponents"].astype(np.int64)),
            values=values.reshape(rows, -1),
        )


def _codebook(rows: Tensor, cfg: UniformConfig) -> tuple[Tensor, Tensor]:
    """fp16 centroids (k-means over the rows) and each row's nearest stored centroid."""
    generator = torch.Generator().manual_seed(cfg.seed)
    centroids = kmeans(rows, cfg.clusters, cfg.iterations, generator).half()
    assignment, _ = nearest(rows, centroids.float())
    return centroids, assignment


def _weighted_rms(differences: Tensor, importance: Tensor | None) -> float:
    energy = differences.pow(2).mean(dim=1).double()
    if importance is None:
        return math.sqrt(float(energy.mean()))
    weights = importance.detach().double().reshape(-1)
    return math.sqrt(float((weights * energy).sum() / weights.sum().clamp_min(1e-30)))


def uniform_encode(weight: Tensor, config: UniformConfig | None = None,
                   importance: Tensor | None = None) -> UniformEncoded:
    """Quantize ``weight``'s rows; ``importance`` (one non-negative value per row) sets their steps."""
    cfg = config or UniformConfig()
    rows = _rows(weight)
    centroids, assignment = _codebook(rows, cfg)
    differences = rows - centroids.float()[assignment]
    base = float(np.float32(cfg.step * max(_weighted_rms(differences, importance), 1e-12)))
    exponents = row_exponents(importance, rows.shape[0], cfg.max_exponent)
    values = torch.round(differences / row_steps(base, exponents).unsqueeze(1)).long()
    return UniformEncoded(tuple(weight.shape), cfg, base, centroids, assignment, exponents, values)


def uniform_decode(encoded: UniformEncoded) -> Tensor:
    """Rebuild the float32 tensor: centroid plus grid position times the row's step."""
    steps = row_steps(encoded.base, encoded.exponents).unsqueeze(1)
    rows = encoded.centroids.float()[encoded.assignment] + encoded.values.float() * steps
    return rows.reshape(encoded.shape)
