"""Ternary weights in the block layouts of GGUF's TQ2_0 and TQ1_0 types, in vectorised numpy.

Both types cut a flat run of weights into blocks of 256 and give each block an fp16 scale ``d``:

- TQ2_0 (66 bytes a block, 2.06 bits a weight): 64 bytes of 2-bit codes ``t + 1``; in each 128-weight
  half, byte ``j`` holds weights ``j, j+32, j+64, j+96`` at bits 0, 2, 4, 6. Then ``d``.
- TQ1_0 (54 bytes a block, 1.69 bits a weight): five trits a byte. Weights 0..159 go in 32 bytes (byte
  ``j`` holds weights ``j + 32*i``), 160..239 in 16 bytes (``160 + j + 16*i``), 240..255 in 4 bytes of
  four trits (``240 + j + 4*i``); the base-3 number is stored as ``ceil(n * 256 / 243)`` so that
  ``(byte * 3**i mod 256) * 3 >> 8`` reads trit ``i`` back. Then ``d``.

The byte layout is GGUF's own (``gguf.quants`` in the ``gguf`` package and ``ggml-quants.c``), so the
blocks can be written into a GGUF file unchanged; the tests check every byte against ``gguf``. GGUF's
quantizer writes ``d = 0`` for a block whose weights are all zero; we do the same, so a block's ``d``
alone never carries the layer's scale and callers keep that scale beside the blocks.

A tensor whose size is not a multiple of 256 is padded with zeros; ``unpack_*`` takes the true shape.
With ``row_aligned=True`` each row is padded on its own, the layout GGUF needs for its tensors and the one
that lets per-row scales live in the block scales.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

QK = 256
TQ2_0_BLOCK_BYTES = 66
TQ1_0_BLOCK_BYTES = 54
TernaryFormat = Literal["tq2_0", "tq1_0"]
BLOCK_BYTES: dict[str, int] = {"tq2_0": TQ2_0_BLOCK_BYTES, "tq1_0": TQ1_0_BLOCK_BYTES}

_TRIT_WEIGHTS5 = np.array([81, 27, 9, 3, 1], dtype=np.uint16).reshape(1, 1, 5, 1)
_TRIT_WEIGHTS4 = np.array([81, 27, 9, 3], dtype=np.uint16).reshape(1, 1, 4, 1)
_POW3_5 = np.array([1, 3, 9, 27, 81], dtype=np.uint8).reshape(1, 1, 5, 1)
_POW3_4 = np.array([1, 3, 9, 27], dtype=np.uint8).reshape(1, 1, 4, 1)
_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)


def _padded_row_length(n_cols: int) -> int:
    return -(-n_cols // QK) * QK


def to_blocks(ternary: np.ndarray, row_aligned: bool = False) -> np.ndarray:
    """Lay a ternary array out as ``(n_blocks, 256)`` int8, zero-padded: flat, or row by row."""
    values = np.asarray(ternary)
    if values.dtype.kind not in "iu":
        raise TypeError(f"ternary values must be integers, got {values.dtype}")
    values = values.astype(np.int8, copy=False)
    if row_aligned and values.ndim >= 2:
        rows = values.reshape(-1, values.shape[-1])
        padded = np.zeros((rows.shape[0], _padded_row_length(rows.shape[1])), dtype=np.int8)
        padded[:, : rows.shape[1]] = rows
        return padded.reshape(-1, QK)
    flat = values.reshape(-1)
    padded = np.zeros(_padded_row_length(max(flat.size, 1)), dtype=np.int8)
    padded[: flat.size] = flat
    return padded.reshape(-1, QK)


def from_blocks(blocks: np.ndarray, shape: Sequence[int], row_aligned: bool = False) -> np.ndarray:
    """Inverse of :func:`to_blocks`: drop the padding and restore ``shape``."""
    shape = tuple(int(s) for s in shape)
    if row_aligned and len(shape) >= 2:
        n_cols = shape[-1]
        rows = blocks.reshape(-1, _padded_row_length(n_cols))
        return np.ascontiguousarray(rows[:, :n_cols]).reshape(shape)
    size = int(np.prod(shape, dtype=np.int64))
    return blocks.reshape(-1)[:size].reshape(shape)


def block_count(shape: Sequence[int], row_aligned: bool = False) -> int:
    """Number of 256-weight blocks a tensor of ``shape`` takes."""
    shape = tuple(int(s) for s in shape)
    if row_aligned and len(shape) >= 2:
        n_rows = int(np.prod(shape[:-1], dtype=np.int64))
        return n_rows * _padded_row_length(shape[-1]) // QK
    return _padded_row_length(max(int(np.prod(shape, dtype=np.int64)), 1)) // QK


def _block_scales_fp16(blocks: np.ndarray, scales: float | np.ndarray) -> np.ndarray:
    """Per-block fp16 scale bytes; 0 for an all-zero block, as GGUF's quantizer writes."""
    per_block = np.broadcast_to(np.asarray(scales, dtype=np.float32).reshape(-1), (blocks.shape[0],))
    if np.any(per_block < 0) or not np.all(np.isfinite(per_block)):
        raise ValueError("block scales must be finite and non-negative")
    nonzero = np.any(blocks != 0, axis=1)
    d = np.where(nonzero, per_block, np.float32(0)).astype(np.float16)
    return d.reshape(-1, 1).view(np.uint8)


def _check_ternary(blocks: np.ndarray) -> None:
    if blocks.size and (blocks.min() < -1 or blocks.max() > 1):
        raise ValueError("values must be in {-1, 0, +1}")


def pack_tq2_0(ternary: np.ndarray, scales: float | np.ndarray, row_aligned: bool = False) -> np.ndarray:
    """Pack ternary values and their scale(s) into TQ2_0 blocks, ``(n_blocks, 66)`` uint8.

    ``scales`` is one number (every block) or one per block (see :func:`block_count`).
    """
    blocks = to_blocks(ternary, row_aligned)
    _check_ternary(blocks)
    codes = (blocks + 1).astype(np.uint8).reshape(blocks.shape[0], 2, 4, 32)
    shifted = codes << _SHIFTS
    qs = (shifted[:, :, 0] | shifted[:, :, 1] | shifted[:, :, 2] | shifted[:, :, 3]).reshape(-1, 64)
    return np.concatenate([qs, _block_scales_fp16(blocks, scales)], axis=1)


def _split_blocks(packed: np.ndarray, block_bytes: int) -> np.ndarray:
    data = np.asarray(packed, dtype=np.uint8)
    if data.size % block_bytes:
        raise ValueError(f"packed size {data.size} is not a whole number of {block_bytes}-byte blocks")
    return data.reshape(-1, block_bytes)


def _read_scales(blocks: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(blocks[:, -2:]).view(np.float16).astype(np.float32).reshape(-1)


def unpack_tq2_0(
    packed: np.ndarray, shape: Sequence[int], row_aligned: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read TQ2_0 blocks back: (int8 ternary values of ``shape``, float32 scale of each block)."""
    blocks = _split_blocks(packed, TQ2_0_BLOCK_BYTES)
    qs = blocks[:, :64].reshape(-1, 2, 1, 32)
    codes = (qs >> _SHIFTS) & np.uint8(3)
    values = codes.reshape(-1, QK).astype(np.int8) - np.int8(1)
    return from_blocks(values, shape, row_aligned), _read_scales(blocks)


def _base3_bytes(codes: np.ndarray, trit_weights: np.ndarray, group: int) -> np.ndarray:
    """Sum ``codes`` in groups of trits (most significant first) and scale to a byte, as TQ1_0 stores."""
    n_trits = trit_weights.shape[2]
    grouped = codes.astype(np.uint16).reshape(codes.shape[0], -1, n_trits, group)
    number = np.sum(grouped * trit_weights, axis=2, dtype=np.uint16).reshape(codes.shape[0], -1)
    return ((number * 256 + 242) // 243).astype(np.uint8)


def pack_tq1_0(ternary: np.ndarray, scales: float | np.ndarray, row_aligned: bool = False) -> np.ndarray:
    """Pack ternary values and their scale(s) into TQ1_0 blocks, ``(n_blocks, 54)`` uint8."""
    blocks = to_blocks(ternary, row_aligned)
    _check_ternary(blocks)
    return tq1_0_from_codes((blocks + 1).astype(np.uint8), _block_scales_fp16(blocks, scales))


def _read_trits(packed_bytes: np.ndarray, powers: np.ndarray, group: int) -> np.ndarray:
    """Trit ``i`` of a byte is the top bits of ``(byte * 3**i mod 256) * 3``; uint8 wraps the modulo."""
    rotated = packed_bytes.reshape(packed_bytes.shape[0], -1, 1, group) * powers
    trits = (rotated.astype(np.uint16) * 3) >> 8
    return trits.reshape(packed_bytes.shape[0], -1).astype(np.int8) - np.int8(1)


def unpack_tq1_0(
    packed: np.ndarray, shape: Sequence[int], row_aligned: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Read TQ1_0 blocks back: (int8 ternary values of ``shape``, float32 scale of each block)."""
    codes, scale_bytes = tq1_0_codes(packed)
    values = codes.astype(np.int8) - np.int8(1)
    return from_blocks(values, shape, row_aligned), scale_bytes.view(np.float16).astype(np.float32).reshape(-1)


def tq1_0_codes(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TQ1_0 blocks as their parts: trit codes ``(n_blocks, 256)`` uint8 in 0..2 (padding included) and the
    raw fp16 scale bytes ``(n_blocks, 2)``. :func:`tq1_0_from_codes` rebuilds the blocks from them; blocks
    not written by :func:`pack_tq1_0` (bytes outside its base-3 mapping) do not survive the round trip."""
    blocks = _split_blocks(packed, TQ1_0_BLOCK_BYTES)
    values = np.concatenate(
        [
            _read_trits(blocks[:, :32], _POW3_5, 32),
            _read_trits(blocks[:, 32:48], _POW3_5, 16),
            _read_trits(blocks[:, 48:52], _POW3_4, 4),
        ],
        axis=1,
    )
    return (values + np.int8(1)).astype(np.uint8), np.ascontiguousarray(blocks[:, -2:])


def tq1_0_from_codes(codes: np.ndarray, scale_bytes: np.ndarray) -> np.ndarray:
    """Inverse of :func:`tq1_0_codes`: ``(n_blocks, 54)`` uint8 TQ1_0 blocks."""
    codes = np.asarray(codes, dtype=np.uint8).reshape(-1, QK)
    qs0 = _base3_bytes(codes[:, :160], _TRIT_WEIGHTS5, 32)
    qs1 = _base3_bytes(codes[:, 160:240], _TRIT_WEIGHTS5, 16)
    qh = _base3_bytes(codes[:, 240:], _TRIT_WEIGHTS4, 4)
    return np.concatenate([qs0, qs1, qh, np.asarray(scale_bytes, dtype=np.uint8).reshape(-1, 2)], axis=1)


@dataclass(frozen=True)
class PackedTernary:
    """A packed ternary tensor with what is needed to read it back."""

    data: np.ndarray
    shape: tuple[int, ...]
    fmt: TernaryFormat
    row_aligned: bool

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)


def pack_ternary(
    ternary: np.ndarray, scales: float | np.ndarray, fmt: TernaryFormat = "tq2_0", row_aligned: bool = False
) -> PackedTernary:
    """Pack in either format; per-row ``scales`` (one per row) need ``row_aligned`` to map onto blocks."""
    if fmt not in BLOCK_BYTES:
        raise ValueError(f"unknown ternary format {fmt!r}; use 'tq2_0' or 'tq1_0'")
    values = np.asarray(ternary)
    block_scales = _expand_row_scales(values.shape, scales, row_aligned)
    packer = pack_tq2_0 if fmt == "tq2_0" else pack_tq1_0
    data = packer(values, block_scales, row_aligned)
    return PackedTernary(data=data, shape=tuple(values.shape), fmt=fmt, row_aligned=row_aligned)


def _expand_row_scales(
    shape: tuple[int, ...], scales: float | np.ndarray, row_aligned: bool
) -> float | np.ndarray:
    """Turn one scale per row into one per block; a single scale passes through."""
    scale_array = np.asarray(scales, dtype=np.float32).reshape(-1)
    if scale_array.size == 1:
        return float(scale_array[0])
    n_rows = int(np.prod(shape[:-1], dtype=np.int64))
    if not row_aligned or scale_array.size != n_rows:
        raise ValueError("per-row scales need row_aligned=True and exactly one scale per row")
    return np.repeat(scale_array, _padded_row_length(shape[-1]) // QK)


def unpack_ternary(packed: PackedTernary) -> tuple[np.ndarray, np.ndarray]:
    """Ternary values and per-block scales of a :class:`PackedTernary`."""
    unpacker = unpack_tq2_0 if packed.fmt == "tq2_0" else unpack_tq1_0
    return unpacker(packed.data, packed.shape, packed.row_aligned)
