"""VPTQ-style vector quantization (Liu et al. 2024): weights as indices into a learned codebook of vectors.

A weight matrix ``(M, N)`` is cut, column by column, into vectors of ``v`` consecutive rows (VPTQ splits
along the output dimension so that one input column's importance applies to a whole vector). A k-means
codebook of ``k`` centroids is fitted to the vectors (deterministic init from a seed, Lloyd iterations,
vectorised in chunks); each vector is then stored as a ``ceil(log2 k)``-bit index. An optional residual
codebook quantizes what the first one missed, and optional per-column importance (e.g. the mean squared
input activation of each input feature, supplied by the caller) weights the k-means objective, as VPTQ's
Hessian-weighted k-means does. Codebooks are stored in fp16; assignment is done against the fp16 values so
the stored indices are the best ones for the stored codebook.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class VPTQConfig:
    """Vector length ``vector`` (v), ``codebook`` centroids (k) and an optional residual codebook size."""

    vector: int = 4
    codebook: int = 256
    residual: int = 0
    iterations: int = 10
    seed: int = 0
    fit_vectors: int = 1 << 18
    chunk: int = 1 << 14

    def __post_init__(self) -> None:
        if self.vector < 1 or self.codebook < 2 or self.residual < 0 or self.residual == 1:
            raise ValueError("vector must be >= 1, codebook >= 2 and residual 0 (off) or >= 2")
        if self.iterations < 0 or self.fit_vectors < 1 or self.chunk < 1:
            raise ValueError("iterations must be >= 0, fit_vectors and chunk >= 1")

    @property
    def index_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.codebook)))

    @property
    def residual_index_bits(self) -> int:
        return max(1, math.ceil(math.log2(self.residual))) if self.residual else 0

    def bits_per_weight(self, numel: int) -> float:
        """Index bits per weight plus the fp16 codebooks spread over ``numel`` weights."""
        n_vectors = -(-numel // self.vector)
        index_bits = n_vectors * (self.index_bits + self.residual_index_bits)
        codebook_bits = 16 * self.vector * (self.codebook + self.residual)
        return (index_bits + codebook_bits) / max(1, numel)


def _as_matrix(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) >= 2:
        return int(shape[0]), math.prod(shape[1:])
    return math.prod(shape), 1


def to_vectors(weight: Tensor, vector: int) -> Tensor:
    """``(M, N)`` (or flattened to it) -> ``(N * ceil(M/v), v)``: each column cut into zero-padded runs."""
    rows, cols = _as_matrix(weight.shape)
    padded_rows = -(-rows // vector) * vector
    matrix = weight.detach().float().reshape(rows, cols)
    padded = torch.zeros(padded_rows, cols, dtype=torch.float32)
    padded[:rows] = matrix
    return padded.T.reshape(cols * (padded_rows // vector), vector).contiguous()


def from_vectors(vectors: Tensor, shape: Sequence[int], vector: int) -> Tensor:
    """Inverse of :func:`to_vectors`."""
    rows, cols = _as_matrix(shape)
    padded_rows = -(-rows // vector) * vector
    return vectors.reshape(cols, padded_rows).T[:rows].reshape(tuple(shape)).contiguous()


def vector_weights(importance: Tensor | None, shape: Sequence[int], vector: int) -> Tensor | None:
    """Per-vector weights from per-column importance (one value per column of the ``(M, N)`` view)."""
    if importance is None:
        return None
    rows, cols = _as_matrix(shape)
    importance = importance.detach().float().reshape(-1)
    if importance.numel() != cols or bool((importance < 0).any()):
        raise ValueError(f"importance needs {cols} non-negative values, one per column")
    return importance.repeat_interleave(-(-rows // vector))


def nearest(vectors: Tensor, centroids: Tensor, chunk: int = 1 << 14) -> tuple[Tensor, Tensor]:
    """Index of the nearest centroid of each vector and the squared distance to it."""
    centroid_sq = (centroids**2).sum(dim=1)
    index = torch.empty(vectors.shape[0], dtype=torch.long)
    distance = torch.empty(vectors.shape[0])
    for start in range(0, vectors.shape[0], chunk):
        part = vectors[start : start + chunk]
        scores = torch.addmm(centroid_sq, part, centroids.T, alpha=-2.0)
        best, where = scores.min(dim=1)
        index[start : start + chunk] = where
        distance[start : start + chunk] = (best + (part**2).sum(dim=1)).clamp_min(0.0)
    return index, distance


def kmeans(
    vectors: Tensor,
    k: int,
    iterations: int,
    generator: torch.Generator,
    weights: Tensor | None = None,
    chunk: int = 1 << 14,
) -> Tensor:
    """Weighted Lloyd k-means from ``k`` distinct random vectors; an emptied centroid is moved to the vector
    with the largest weighted error, so no codebook entry is wasted."""
    n = vectors.shape[0]
    if n <= k:
        filler = vectors[:1].expand(k - n, -1) if n else torch.zeros(k, vectors.shape[1])
        return torch.cat([vectors, filler])
    weights = torch.ones(n) if weights is None else weights
    centroids = vectors[torch.randperm(n, generator=generator)[:k]].clone()
    for _ in range(iterations):
        index, distance = nearest(vectors, centroids, chunk)
        mass = torch.zeros(k).index_add_(0, index, weights)
        sums = torch.zeros_like(centroids).index_add_(0, index, vectors * weights.unsqueeze(1))
        empty = mass <= 0
        centroids = torch.where(empty.unsqueeze(1), centroids, sums / mass.clamp_min(1e-30).unsqueeze(1))
        if bool(empty.any()):
            worst = torch.topk(distance * weights, int(empty.sum())).indices
            centroids[empty] = vectors[worst]
    return centroids


@dataclass(frozen=True)
class VPTQEncoded:
    """A tensor as fp16 codebook(s) and per-vector indices."""

    shape: tuple[int, ...]
    config: VPTQConfig
    codebook: Tensor  # (k, v) float16
    indices: Tensor  # (n_vectors,) int64
    residual_codebook: Tensor | None = None
    residual_indices: Tensor | None = None

    def params(self) -> dict:
        return {"config": asdict(self.config), "n_vectors": int(self.indices.numel())}

    def symbol_streams(self) -> dict[str, tuple[np.ndarray, int]]:
        """Unsigned symbol streams and their bit widths (codebooks as raw fp16 bit patterns)."""
        cfg = self.config
        streams = {
            "codebook": (self.codebook.reshape(-1).view(torch.int16).numpy().view(np.uint16), 16),
            "indices": (self.indices.numpy(), cfg.index_bits),
        }
        if self.residual_codebook is not None and self.residual_indices is not None:
            residual = self.residual_codebook.reshape(-1).view(torch.int16).numpy().view(np.uint16)
            streams["residual_codebook"] = (residual, 16)
            streams["residual_indices"] = (self.residual_indices.numpy(), cfg.residual_index_bits)
        return streams

    @classmethod
    def from_streams(cls, shape: Sequence[int], params: dict, streams: dict[str, np.ndarray]) -> VPTQEncoded:
        cfg = VPTQConfig(**params["config"])

        def book(name: str) -> Tensor:
            raw = streams[name].astype(np.uint16).view(np.float16)
            return torch.from_numpy(raw.copy()).reshape(-1, cfg.vector)

        has_residual = "residual_codebook" in streams
        return cls(
            shape=tuple(int(s) for s in shape),
            config=cfg,
            codebook=book("codebook"),
            indices=torch.from_numpy(streams["indices"].astype(np.int64)),
            residual_codebook=book("residual_codebook") if has_residual else None,
            residual_indices=(
                torch.from_numpy(streams["residual_indices"].astype(np.int64)) if has_residual else None
            ),
        )


def _fit_codebook(
    vectors: Tensor, k: int, cfg: VPTQConfig, generator: torch.Generator, weights: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Fit on (a seeded sample of) the vectors, round to fp16, assign every vector: (book, index, fit)."""
    sample, sample_weights = vectors, weights
    if vectors.shape[0] > cfg.fit_vectors:
        pick = torch.randperm(vectors.shape[0], generator=generator)[: cfg.fit_vectors]
        sample = vectors[pick]
        sample_weights = None if weights is None else weights[pick]
    centroids = kmeans(sample, k, cfg.iterations, generator, sample_weights, cfg.chunk)
    codebook = centroids.half()
    index, _ = nearest(vectors, codebook.float(), cfg.chunk)
    return codebook, index, codebook.float()[index]


def vptq_encode(
    weight: Tensor, config: VPTQConfig | None = None, importance: Tensor | None = None
) -> VPTQEncoded:
    """Vector-quantize ``weight``; ``importance`` (one non-negative value per column) weights k-means."""
    cfg = config or VPTQConfig()
    generator = torch.Generator().manual_seed(cfg.seed)
    vectors = to_vectors(weight, cfg.vector)
    weights = vector_weights(importance, weight.shape, cfg.vector)
    codebook, index, fitted = _fit_codebook(vectors, cfg.codebook, cfg, generator, weights)
    if not cfg.residual:
        return VPTQEncoded(tuple(weight.shape), cfg, codebook, index)
    residual_book, residual_index, _ = _fit_codebook(vectors - fitted, cfg.residual, cfg, generator, weights)
    return VPTQEncoded(tuple(weight.shape), cfg, codebook, index, residual_book, residual_index)


def vptq_decode(encoded: VPTQEncoded) -> Tensor:
    """Rebuild the float32 tensor from its codebook(s) and indices."""
    vectors = encoded.codebook.float()[encoded.indices]
    if encoded.residual_codebook is not None and encoded.residual_indices is not None:
        vectors = vectors + encoded.residual_codebook.float()[encoded.residual_indices]
    return from_vectors(vectors, encoded.shape, encoded.config.vector)
