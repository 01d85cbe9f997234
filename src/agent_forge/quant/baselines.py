"""The plain baselines Phase 8 must beat: GGUF Q4_0 blocks and ``xz -9e``.

- **Q4_0** (llama.cpp's 4-bit type): blocks of 32 consecutive weights of a row, each an fp16 scale
  ``d = m / -8`` (``m`` the block's weight of largest magnitude, sign kept) and 32 codes
  ``min(15, trunc(w / d + 8.5))`` stored two a byte (code ``j`` in the low nibble of byte ``j``, code
  ``j + 16`` in its high nibble), 18 bytes a block (4.5 bits a weight); ``w ~ (code - 8) * d``. This is
  ``quantize_row_q4_0_ref`` of ``ggml-quants.c``; the tests check it byte for byte against the ``gguf``
  package.
- **xz -9e**: LZMA2 at preset 9 with the "extreme" flag, as the ``xz`` tool writes it (``.xz`` framing
  included), over the concatenation of the streams compared.

Phase 8 and ``benchmarks/compression.py`` measure a model file made this way beside their own.
"""

from __future__ import annotations

import lzma
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import Tensor

from agent_forge.quant.container import EncodedTensor
from agent_forge.quant.entropy import decode_symbols, pack_uint, xz_filters

Q4_0_BLOCK = 32
Q4_0_BLOCK_BYTES = 18


def xz_9e_size(data: bytes) -> int:
    """Bytes of ``data`` after ``xz -9e`` (the whole .xz file, CRC64 check as the tool writes it)."""
    return len(lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=xz_filters(len(data))))


def _blocks(weight: Tensor) -> Tensor:
    """Rows cut into blocks of 32 (a row is zero-padded to a whole number of blocks)."""
    rows = weight.detach().float().reshape(weight.shape[0] if weight.dim() else 1, -1)
    pad = (-rows.shape[1]) % Q4_0_BLOCK
    return torch.nn.functional.pad(rows, (0, pad)).reshape(-1, Q4_0_BLOCK)


def q4_0_quantize(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Q4_0 codes ``(n_blocks, 32)`` uint8 in 0..15 and scales ``(n_blocks,)`` float16."""
    blocks = _blocks(weight)
    index = blocks.abs().argmax(dim=1, keepdim=True)  # the first of equal magnitudes, as the C loop keeps
    d = blocks.gather(1, index).squeeze(1) / -8.0
    inverse = torch.where(d != 0, 1.0 / d, torch.zeros_like(d))
    codes = torch.clamp(torch.trunc(blocks * inverse.unsqueeze(1) + 8.5), max=15)
    return codes.to(torch.uint8), d.half()


def q4_0_dequantize(codes: Tensor, scales: Tensor, shape: tuple[int, ...]) -> Tensor:
    """``(code - 8) * d`` back in ``shape`` (float32), the padding dropped."""
    values = (codes.float() - 8.0) * scales.float().unsqueeze(1)
    rows = shape[0] if shape else 1
    return values.reshape(rows, -1)[:, : int(np.prod(shape[1:], dtype=np.int64))].reshape(shape)


def q4_0_bytes(codes: Tensor, scales: Tensor) -> bytes:
    """The blocks as GGUF stores them: fp16 ``d`` then 16 bytes of nibbles, block after block."""
    low, high = codes[:, :16].numpy(), codes[:, 16:].numpy()
    nibbles = (low | (high << 4)).astype(np.uint8)
    d = scales.numpy().astype("<f2").view(np.uint8).reshape(-1, 2)
    return np.concatenate([d, nibbles], axis=1).tobytes()


def q4_0_file(tensors: Mapping[str, Tensor], quantized: set[str]) -> tuple[bytes, dict[str, Tensor]]:
    """A model file with the ``quantized`` tensors in Q4_0 blocks and every other tensor's bytes as they
    are, in order; returns the bytes and the tensors a loader would rebuild (in their own dtypes)."""
    parts, rebuilt = [], {}
    for name, tensor in tensors.items():
        if name in quantized:
            codes, scales = q4_0_quantize(tensor)
            parts.append(q4_0_bytes(codes, scales))
            rebuilt[name] = q4_0_dequantize(codes, scales, tuple(tensor.shape)).to(tensor.dtype)
        else:
            parts.append(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            rebuilt[name] = tensor
    return b"".join(parts), rebuilt


def stage_input(items: Iterable[EncodedTensor]) -> bytes:
    """The bytes our lossless stage is given for these tensors, concatenated: a raw tensor's own bytes, a
    lossy one's streams bit-packed at their widths (what ``xz -9e`` is compared against)."""
    parts = []
    for item in items:
        if item.method == "raw":
            parts.append(item.reconstruction.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            continue
        for stream in item.streams.values():
            parts.append(pack_uint(decode_symbols(stream.blob), stream.width))
    return b"".join(parts)
