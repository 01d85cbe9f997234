"""Read a safetensors file into numpy arrays with the standard library and numpy only.

The format is an 8-byte little-endian header length, a JSON header (dtype, shape and byte range of every
tensor, plus an optional ``__metadata__`` dict of strings) and the raw little-endian data. The runtime
reads it itself so a bundle needs neither torch nor the ``safetensors`` package.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

_DTYPES: dict[str, str] = {
    "F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "I16": "<i2", "I8": "i1",
    "U8": "u1", "BOOL": "?", "BF16": "<u2",
}
_MAX_HEADER = 100_000_000


class SafetensorsError(ValueError):
    """The file is not a readable safetensors file."""


def _header(raw: bytes) -> tuple[dict, int]:
    if len(raw) < 8:
        raise SafetensorsError("file shorter than the 8-byte header length")
    size = int.from_bytes(raw[:8], "little")
    if size > min(_MAX_HEADER, len(raw) - 8):
        raise SafetensorsError(f"header length {size} does not fit the file")
    try:
        return json.loads(raw[8 : 8 + size].decode("utf-8")), 8 + size
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SafetensorsError(f"header is not JSON: {err}") from err


def _tensor(raw: bytes, base: int, name: str, info: dict) -> np.ndarray:
    dtype = info.get("dtype")
    if dtype not in _DTYPES:
        raise SafetensorsError(f"{name}: unsupported dtype {dtype}")
    begin, end = (base + int(v) for v in info["data_offsets"])
    shape = tuple(int(s) for s in info["shape"])
    np_dtype = np.dtype(_DTYPES[dtype])
    count = int(np.prod(shape, dtype=np.int64))
    if end > len(raw) or end - begin != count * np_dtype.itemsize:
        raise SafetensorsError(f"{name}: byte range does not match shape {shape}")
    array = np.frombuffer(raw, dtype=np_dtype, count=count, offset=begin)
    if dtype == "BF16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array.reshape(shape)


def read_safetensors(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """All tensors (read-only views of one buffer; bfloat16 widened to float32) and the metadata strings."""
    raw = Path(path).read_bytes()
    header, base = _header(raw)
    metadata = header.pop("__metadata__", None) or {}
    tensors = {name: _tensor(raw, base, name, info) for name, info in header.items()}
    return tensors, {str(k): str(v) for k, v in metadata.items()}
