"""Unpack GGUF TQ2_0 / TQ1_0 ternary blocks in numpy (the decoder half of ``quant/ternary_pack.py``).

Both types cut a flat run of weights (or, row-aligned, each row padded to whole blocks) into blocks of 256
with an fp16 scale ``d`` at the end of each block:

- TQ2_0, 66 bytes: 64 bytes of 2-bit codes ``t + 1``; in each 128-weight half, byte ``j`` holds weights
  ``j, j+32, j+64, j+96`` at bits 0, 2, 4, 6.
- TQ1_0, 54 bytes: five trits a byte for weights 0..239 (32 bytes for 0..159 with byte ``j`` holding
  ``j + 32*i``, 16 bytes for 160..239 with ``160 + j + 16*i``), four for 240..255 (``240 + j + 4*i``);
  trit ``i`` of a byte is ``((byte * 3**i) mod 256) * 3 >> 8``.

Kept in this torch-free package so a bundle decodes its own weights; a unit test checks it against the
packer byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

QK = 256
BLOCK_BYTES = {"tq2_0": 66, "tq1_0": 54}
_SHIFTS = np.array([0, 2, 4, 6], dtype=np.uint8).reshape(1, 1, 4, 1)
_POW3_5 = np.array([1, 3, 9, 27, 81], dtype=np.uint8).reshape(1, 1, 5, 1)
_POW3_4 = np.array([1, 3, 9, 27], dtype=np.uint8).reshape(1, 1, 4, 1)


def _blocks(packed: np.ndarray, fmt: str) -> np.ndarray:
    if fmt not in BLOCK_BYTES:
        raise ValueError(f"unknown ternary format {fmt!r}; expected one of {sorted(BLOCK_BYTES)}")
    data = np.asarray(packed, dtype=np.uint8)
    if data.size % BLOCK_BYTES[fmt]:
        raise ValueError(f"{data.size} bytes is not a whole number of {fmt} blocks")
    return data.reshape(-1, BLOCK_BYTES[fmt])


def _tq2_values(blocks: np.ndarray) -> np.ndarray:
    codes = (blocks[:, :64].reshape(-1, 2, 1, 32) >> _SHIFTS) & np.uint8(3)
    return codes.reshape(-1, QK).astype(np.int8) - np.int8(1)


def _trits(packed_bytes: np.ndarray, powers: np.ndarray, group: int) -> np.ndarray:
    rotated = packed_bytes.reshape(packed_bytes.shape[0], -1, 1, group) * powers
    trits = (rotated.astype(np.uint16) * 3) >> 8
    return trits.reshape(packed_bytes.shape[0], -1).astype(np.int8) - np.int8(1)


def _tq1_values(blocks: np.ndarray) -> np.ndarray:
    parts = (_trits(blocks[:, :32], _POW3_5, 32), _trits(blocks[:, 32:48], _POW3_5, 16),
             _trits(blocks[:, 48:52], _POW3_4, 4))
    return np.concatenate(parts, axis=1)


def _restore(values: np.ndarray, shape: tuple[int, ...], row_aligned: bool) -> np.ndarray:
    if row_aligned and len(shape) >= 2:
        padded = -(-shape[-1] // QK) * QK
        return np.ascontiguousarray(values.reshape(-1, padded)[:, : shape[-1]]).reshape(shape)
    size = int(np.prod(shape, dtype=np.int64))
    return values.reshape(-1)[:size].reshape(shape)


def unpack(packed: np.ndarray, fmt: str, shape: Sequence[int], row_aligned: bool = False
           ) -> tuple[np.ndarray, np.ndarray]:
    """int8 ternary values of ``shape`` and the float32 scale ``d`` of every block."""
    blocks = _blocks(packed, fmt)
    values = _tq2_values(blocks) if fmt == "tq2_0" else _tq1_values(blocks)
    scales = np.ascontiguousarray(blocks[:, -2:]).view(np.float16).astype(np.float32).reshape(-1)
    return _restore(values, tuple(int(s) for s in shape), row_aligned), scales
