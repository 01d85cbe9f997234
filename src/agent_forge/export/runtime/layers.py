"""Numpy building blocks of the model: norms, activations, rotary tables, windowed attention, memory."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    mean_square = np.add.reduce(x * x, axis=-1, keepdims=True) * np.float32(1.0 / x.shape[-1])
    return x * (1.0 / np.sqrt(mean_square + np.float32(eps))) * weight


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Written with tanh, which never overflows (exp(-x) does for large negative x)."""
    return np.float32(0.5) * (np.float32(1.0) + np.tanh(np.float32(0.5) * x))


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def unit_rows(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """x / max(||x||, eps) along the last axis (torch.nn.functional.normalize)."""
    return x / np.maximum(np.sqrt(np.sum(x * x, axis=-1, keepdims=True)), np.float32(eps))


class Rotary:
    """Partial rotary embedding in the rotate-half layout on the first ``rotary_dim`` dims of a head."""

    def __init__(self, rotary_dim: int, theta: float) -> None:
        half = rotary_dim // 2
        exponents = np.arange(half, dtype=np.float32) / np.float32(half)
        self.inv_freq = (np.float32(1.0) / np.power(np.float32(theta), exponents)).astype(np.float32)
        self.rotary_dim = rotary_dim

    def tables(self, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.arange(start, start + length, dtype=np.float32)
        angles = positions[:, None] * self.inv_freq[None, :]
        angles = np.concatenate((angles, angles), axis=-1)
        return np.cos(angles), np.sin(angles)

    def apply(self, x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
        """x: (..., length, head_dim); cos and sin (length, rotary_dim)."""
        rd, half = self.rotary_dim, self.rotary_dim // 2
        rot = x[..., :rd]
        rotated = np.concatenate((-rot[..., half:], rot[..., :half]), axis=-1)
        return np.concatenate((rot * cos + rotated * sin, x[..., rd:]), axis=-1)


def window_attention(q: np.ndarray, keys: np.ndarray, values: np.ndarray, window: int) -> np.ndarray:
    """The last L positions attend to keys at positions j with i - window < j <= i.

    q (B, H, L, D); keys, values (B, H, P + L, D) where the first P are cached earlier positions.
    """
    length, total = q.shape[-2], keys.shape[-2]
    scores = (q @ keys.swapaxes(-1, -2)) * np.float32(q.shape[-1] ** -0.5)
    if length > 1 or total > window:
        query_pos = np.arange(length)[:, None] + (total - length)
        key_pos = np.arange(total)[None, :]
        allowed = (key_pos <= query_pos) & (query_pos - key_pos < window)
        scores = np.where(allowed, scores, np.float32(-np.inf))
    scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return (scores / scores.sum(axis=-1, keepdims=True)) @ values


@dataclass
class MemoryState:
    """Titans memory of one layer, (B, d_mem, d_mem) each: M, momentum S, stats of the unfinished chunk."""

    memory: np.ndarray
    momentum: np.ndarray
    pending_kk: np.ndarray
    pending_vk: np.ndarray

    @classmethod
    def zeros(cls, batch: int, d_mem: int) -> MemoryState:
        return cls(*(np.zeros((batch, d_mem, d_mem), np.float32) for _ in range(4)))


@dataclass(frozen=True)
class MemoryConstants:
    alpha: float
    eta: float
    theta: float


def _pad_rows(x: np.ndarray, before: int, after: int) -> np.ndarray:
    """Zero rows before and after along axis 1 (np.pad costs more than the matmuls it feeds)."""
    out = np.zeros((x.shape[0], before + x.shape[1] + after, x.shape[2]), dtype=x.dtype)
    out[:, before : before + x.shape[1]] = x
    return out


def _chunk_stats(k: np.ndarray, v: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """A_c = K_c^T K_c and B_c = V_c^T K_c per chunk of the (zero-padded) segment: (B, n, d, d) each."""
    batch, length = k.shape[:2]
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    if pad:
        k, v = _pad_rows(k, 0, pad), _pad_rows(v, 0, pad)
    kc, vc = k.reshape(batch, n_chunks, chunk, -1), v.reshape(batch, n_chunks, chunk, -1)
    return kc.swapaxes(-1, -2) @ kc, vc.swapaxes(-1, -2) @ kc


def memory_segment(k: np.ndarray, v: np.ndarray, q: np.ndarray, state: MemoryState, start: int, chunk: int,
                   const: MemoryConstants) -> tuple[np.ndarray, MemoryState]:
    """Reads M q for tokens at positions start.. and the state after writing them (see model/memory.py).

    Tokens of chunk c read M as it was after chunks < c; the segment is left-padded to its chunk boundary
    so an unfinished chunk (its statistics pending in the state) continues where it stopped.
    """
    offset = start % chunk
    if offset + k.shape[1] < chunk:  # no chunk completes (most decode steps): read M, add to the pending stats
        kk = state.pending_kk + k.swapaxes(-1, -2) @ k
        vk = state.pending_vk + v.swapaxes(-1, -2) @ k
        return q @ state.memory.swapaxes(-1, -2), MemoryState(state.memory, state.momentum, kk, vk)
    if offset:
        k, v, q = (_pad_rows(t, offset, 0) for t in (k, v, q))
    batch, total, d_mem = k.shape
    complete = total // chunk
    kk, vk = _chunk_stats(k, v, chunk)
    if offset:
        kk[:, 0] += state.pending_kk
        vk[:, 0] += state.pending_vk
    memory, momentum, boundaries = state.memory, state.momentum, [state.memory]
    step = np.float32(2.0 * const.theta)
    for c in range(complete):
        momentum = np.float32(const.eta) * momentum + step * vk[:, c] - step * (memory @ kk[:, c])
        memory = momentum + np.float32(1.0 - const.alpha) * memory
        boundaries.append(memory)
    n_read = kk.shape[1]
    if n_read * chunk > total:
        q = _pad_rows(q, 0, n_read * chunk - total)
    qc = q.reshape(batch, n_read, chunk, d_mem)
    reads = qc @ np.stack(boundaries[:n_read], axis=1).swapaxes(-1, -2)
    reads = reads.reshape(batch, n_read * chunk, d_mem)[:, offset:total]
    if complete < n_read:
        pending = (kk[:, complete], vk[:, complete])
    else:
        pending = (np.zeros_like(state.pending_kk), np.zeros_like(state.pending_vk))
    return reads, MemoryState(memory, momentum, *pending)
