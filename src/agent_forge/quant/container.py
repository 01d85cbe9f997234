"""One compressed file holding a whole model's tensors, each under its own method.

A tensor is stored ``raw`` (lossless: fp16/fp32 tensors, uint8 packed ternary blocks), as ``usq``
(:mod:`agent_forge.quant.uniform`), ``seedlm`` or ``vptq``. Every method yields named symbol streams (bytes,
seeds, indices, codebooks...); each stream goes through the entropy stage
(:mod:`agent_forge.quant.entropy`). A raw tensor is cut into streams whichever of three ways codes smallest
(its ``layout``): its bytes as one stream; byte planes (byte ``i`` of every element in stream ``i``: the
sign-and-exponent byte of fp16 weights is far more predictable than the low mantissa byte, and mixed in one
stream each spoils the other's statistics); or, for TQ1_0 blocks, the trits themselves (2-bit symbols the
rANS coder brings to their entropy, about 1.58 bits against the 1.6 of the five-trits-a-byte packing) and
the blocks' scale bytes apart (one repeated value per layer, which LZ coding all but removes).

File layout: ``b"AFQZ" | version u16 | header length u32 | sha256(header) | zstd(header JSON) | stream blobs``.
The header lists, per tensor, its name, method, shape, dtype, method parameters and, per stream, the blob's
length and CRC32 (blobs follow each other in header order), plus the sha256 of the whole blob section and
free-form metadata. The sha256s detect any damage; the CRC32s name the damaged stream. The header is
zstd-compressed because on small models its JSON would otherwise cost more than the entropy stage saves.
Decoding rebuilds every lossy tensor with the same decoder that produced
the in-memory reconstruction at encode time, so the two are bit-identical.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import struct
import time
import uuid
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from agent_forge.errors import ArtifactCorruptError
from agent_forge.quant.entropy import (
    DEFAULT_CODECS,
    EncodedStream,
    decode_symbols,
    encode_symbols,
    zstd_decode,
    zstd_encode,
)
from agent_forge.quant.seedlm import SeedLMConfig, SeedLMEncoded, seedlm_decode, seedlm_encode
from agent_forge.quant.ternary_pack import TQ1_0_BLOCK_BYTES, tq1_0_codes, tq1_0_from_codes
from agent_forge.quant.uniform import UniformConfig, UniformEncoded, uniform_decode, uniform_encode
from agent_forge.quant.vptq import VPTQConfig, VPTQEncoded, vptq_decode, vptq_encode

MAGIC = b"AFQZ"
FORMAT_VERSION = 3
READABLE_VERSIONS = (2, 3)  # version 2: raw tensors as one byte stream, no usq (still decoded)
_PREAMBLE = struct.Struct("<4sHI32s")
_HEADER_LEVEL = 19


@dataclass(frozen=True)
class RawSpec:
    """Lossless: the tensor's own bytes, through the entropy stage only."""


MethodSpec = RawSpec | UniformConfig | SeedLMConfig | VPTQConfig
LossyEncoded = UniformEncoded | SeedLMEncoded | VPTQEncoded


def method_name(spec: MethodSpec) -> str:
    if isinstance(spec, UniformConfig):
        return "usq"
    if isinstance(spec, SeedLMConfig):
        return "seedlm"
    if isinstance(spec, VPTQConfig):
        return "vptq"
    return "raw"


def describe(spec: MethodSpec) -> str:
    """A short label for reports, e.g. ``seedlm(block=8, coeffs=4, ...)``."""
    params = ", ".join(f"{k}={v}" for k, v in asdict(spec).items())
    return f"{method_name(spec)}({params})" if params else method_name(spec)


@dataclass(frozen=True)
class CompressionPlan:
    """The method of each tensor (tensors not named are stored raw) and the entropy stage's settings."""

    methods: dict[str, MethodSpec] = field(default_factory=dict)
    zstd_level: int = 19
    codecs: tuple[str, ...] = DEFAULT_CODECS

    def spec_for(self, name: str) -> MethodSpec:
        return self.methods.get(name, RawSpec())


@dataclass(frozen=True)
class EncodedTensor:
    """One tensor's entropy-coded streams, its reconstruction and what it cost."""

    name: str
    method: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    params: dict
    streams: dict[str, EncodedStream]
    reconstruction: Tensor
    method_seconds: float
    entropy_seconds: float
    decode_seconds: float

    @property
    def stored_bytes(self) -> int:
        return sum(len(s.blob) for s in self.streams.values())

    @property
    def packed_bytes(self) -> int:
        """Bytes before the entropy stage (the method's output, bit-packed)."""
        return sum(s.packed_bytes for s in self.streams.values())

    @property
    def original_bytes(self) -> int:
        return self.reconstruction.numel() * self.reconstruction.element_size()


Symbols = dict[str, tuple[np.ndarray, int]]


def _tensor_bytes(tensor: Tensor) -> np.ndarray:
    return tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()


def raw_layouts(tensor: Tensor) -> dict[str, Symbols]:
    """Every lossless way to cut ``tensor`` into streams (see the module docstring), by layout name."""
    data = _tensor_bytes(tensor)
    layouts: dict[str, Symbols] = {"bytes": {"data": (data, 8)}}
    size = tensor.element_size()
    if size > 1 and data.size:
        planes = data.reshape(-1, size)
        layouts["planes"] = {f"plane{i}": (np.ascontiguousarray(planes[:, i]), 8) for i in range(size)}
    if tensor.dtype == torch.uint8 and tensor.dim() == 2 and tensor.shape[1] == TQ1_0_BLOCK_BYTES and data.size:
        codes, scale_bytes = tq1_0_codes(data)
        if np.array_equal(tq1_0_from_codes(codes, scale_bytes).reshape(-1), data):  # only blocks we packed
            layouts["tq1_0"] = {"trits": (codes.reshape(-1), 2), "scales": (scale_bytes.reshape(-1), 8)}
    return layouts


def _raw_bytes(streams: Mapping[str, np.ndarray], layout: str) -> np.ndarray:
    """The tensor's bytes from the streams of a raw ``layout``."""
    if layout == "bytes":
        return np.ascontiguousarray(streams["data"], dtype=np.uint8)
    if layout == "planes":
        planes = [np.asarray(streams[f"plane{i}"], dtype=np.uint8) for i in range(len(streams))]
        return np.stack(planes, axis=1).reshape(-1)
    if layout == "tq1_0":
        return tq1_0_from_codes(streams["trits"], streams["scales"]).reshape(-1)
    raise ArtifactCorruptError(f"unknown raw layout {layout!r}", "re-run Phase 8 to rebuild it")


def _raw_tensor(streams: Mapping[str, np.ndarray], shape: Sequence[int], dtype: torch.dtype,
                layout: str = "bytes") -> Tensor:
    raw = _raw_bytes(streams, layout)
    if raw.size == 0:
        return torch.empty(tuple(shape), dtype=dtype)
    return torch.from_numpy(raw.copy()).view(dtype).reshape(tuple(shape))


def _lossy(tensor: Tensor, spec: MethodSpec, importance: Tensor | None) -> LossyEncoded:
    if not tensor.is_floating_point():
        raise ValueError(f"{method_name(spec)} needs a floating-point tensor, got {tensor.dtype}")
    if isinstance(spec, UniformConfig):
        return uniform_encode(tensor, spec, importance)
    if isinstance(spec, SeedLMConfig):
        return seedlm_encode(tensor, spec)
    columns = tensor.reshape(tensor.shape[0], -1).shape[1]
    if importance is not None and importance.numel() != columns:  # a per-row (token) importance is usq's
        importance = None
    return vptq_encode(tensor, spec, importance)


def _decode_lossy(encoded: LossyEncoded, dtype: torch.dtype) -> Tensor:
    if isinstance(encoded, UniformEncoded):
        return uniform_decode(encoded).to(dtype)
    decoded = seedlm_decode(encoded) if isinstance(encoded, SeedLMEncoded) else vptq_decode(encoded)
    return decoded.to(dtype)


def _encode_streams(symbols: Symbols, level: int, codecs: tuple[str, ...]) -> dict[str, EncodedStream]:
    return {key: encode_symbols(values, width, level, codecs) for key, (values, width) in symbols.items()}


def _smallest_raw(tensor: Tensor, level: int, codecs: tuple[str, ...]) -> tuple[dict, dict[str, EncodedStream]]:
    """The raw layout whose streams code smallest: (its params, its streams)."""
    coded = {name: _encode_streams(symbols, level, codecs) for name, symbols in raw_layouts(tensor).items()}
    best = min(coded, key=lambda name: sum(len(s.blob) for s in coded[name].values()))
    return {"layout": best}, coded[best]


def encode_tensor(
    name: str,
    tensor: Tensor,
    spec: MethodSpec,
    level: int = 19,
    codecs: tuple[str, ...] = DEFAULT_CODECS,
    importance: Tensor | None = None,
) -> EncodedTensor:
    """Apply ``spec`` to one tensor and entropy-code its streams; keep the reconstruction the file gives."""
    tensor = tensor.detach().cpu()
    start = time.perf_counter()
    encoded = None if isinstance(spec, RawSpec) else _lossy(tensor, spec, importance)
    method_seconds = time.perf_counter() - start
    if encoded is None:
        params, streams = _smallest_raw(tensor, level, codecs)
    else:
        params, streams = encoded.params(), _encode_streams(encoded.symbol_streams(), level, codecs)
    entropy_seconds = time.perf_counter() - start - method_seconds
    start = time.perf_counter()
    reconstruction = tensor.clone() if encoded is None else _decode_lossy(encoded, tensor.dtype)
    decode_seconds = time.perf_counter() - start
    return EncodedTensor(
        name=name,
        method=method_name(spec),
        shape=tuple(tensor.shape),
        dtype=tensor.dtype,
        params=params,
        streams=streams,
        reconstruction=reconstruction,
        method_seconds=method_seconds,
        entropy_seconds=entropy_seconds,
        decode_seconds=decode_seconds,
    )


def _tensor_entry(item: EncodedTensor) -> dict:
    """Header entry of one tensor: its blobs follow each other in the order listed."""
    streams = [
        {"name": key, "length": len(stream.blob), "crc32": zlib.crc32(stream.blob)}
        for key, stream in item.streams.items()
    ]
    dtype = str(item.dtype).removeprefix("torch.")
    return {
        "name": item.name,
        "method": item.method,
        "shape": list(item.shape),
        "dtype": dtype,
        "params": item.params,
        "streams": streams,
    }


def assemble(encoded: Sequence[EncodedTensor], metadata: Mapping | None = None) -> bytes:
    """Lay encoded tensors out as one container (header + blobs); ``metadata`` (JSON-ready) rides in the
    header so a decoder can rebuild a whole model from the file alone."""
    blobs = b"".join(stream.blob for item in encoded for stream in item.streams.values())
    document = {
        "version": FORMAT_VERSION,
        "tensors": [_tensor_entry(item) for item in encoded],
        "metadata": dict(metadata or {}),
        "blobs_sha256": hashlib.sha256(blobs).hexdigest(),
    }
    header = zstd_encode(json.dumps(document, sort_keys=True, separators=(",", ":")).encode(), _HEADER_LEVEL)
    preamble = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(header), hashlib.sha256(header).digest())
    return b"".join([preamble, header, blobs])


@dataclass(frozen=True)
class CompressedModel:
    """A container's bytes with the per-tensor results that went into it."""

    data: bytes
    tensors: dict[str, EncodedTensor]

    @property
    def reconstruction(self) -> dict[str, Tensor]:
        return {name: item.reconstruction for name, item in self.tensors.items()}


def compress_tensors(
    tensors: Mapping[str, Tensor],
    plan: CompressionPlan,
    importance: Mapping[str, Tensor] | None = None,
    metadata: Mapping | None = None,
) -> CompressedModel:
    """Encode every tensor under ``plan``. ``importance`` (by tensor name) feeds the methods that weigh
    their error: one value per row for ``usq`` (an embedding's token frequencies), per column for VPTQ."""
    importance = importance or {}
    encoded = {
        name: encode_tensor(
            name, tensor, plan.spec_for(name), plan.zstd_level, plan.codecs, importance.get(name)
        )
        for name, tensor in tensors.items()
    }
    return CompressedModel(assemble(list(encoded.values()), metadata), encoded)


def encode_model(
    tensors: Mapping[str, Tensor],
    plan: CompressionPlan,
    importance: Mapping[str, Tensor] | None = None,
    metadata: Mapping | None = None,
) -> bytes:
    """The container bytes for ``tensors`` under ``plan``."""
    return compress_tensors(tensors, plan, importance, metadata).data


def write_model(path: str | Path, data: bytes) -> Path:
    """Write a container atomically: a temporary sibling, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return path


def _split(data: bytes) -> tuple[dict, memoryview]:
    """Verify the preamble and header; return the header and the blob section."""
    if len(data) < _PREAMBLE.size:
        raise ArtifactCorruptError("compressed model is truncated", "re-run Phase 8 to rebuild it")
    magic, version, length, digest = _PREAMBLE.unpack_from(data)
    if magic != MAGIC or version not in READABLE_VERSIONS:
        raise ArtifactCorruptError(
            f"not an Agent Forge compressed model (magic {magic!r}, version {version})"
        )
    header = data[_PREAMBLE.size : _PREAMBLE.size + length]
    if hashlib.sha256(header).digest() != digest:
        raise ArtifactCorruptError("compressed model header fails its sha256", "re-run Phase 8 to rebuild it")
    return json.loads(zstd_decode(header)), memoryview(data)[_PREAMBLE.size + length :]


def read_header(data: bytes) -> dict:
    """Parse and verify the header of container bytes."""
    return _split(data)[0]


def read_metadata(data: bytes) -> dict:
    """The metadata stored with :func:`assemble` (empty when none was given)."""
    return read_header(data).get("metadata", {})


def _stream_blobs(header: dict, blobs: memoryview) -> list[tuple[str, str, bytes]]:
    """(tensor, stream, blob) for every stream; a damaged file is refused, naming the first bad stream."""
    out, offset = [], 0
    for entry in header["tensors"]:
        for stream in entry["streams"]:
            out.append((entry["name"], stream["name"], bytes(blobs[offset : offset + stream["length"]])))
            offset += stream["length"]
    if offset == len(blobs) and hashlib.sha256(blobs).hexdigest() == header["blobs_sha256"]:
        return out
    expected = [s["crc32"] for entry in header["tensors"] for s in entry["streams"]]
    for (tensor, name, blob), crc in zip(out, expected, strict=True):
        if zlib.crc32(blob) != crc:
            raise ArtifactCorruptError(
                f"stream {name!r} of tensor {tensor!r} fails its checksum (file sha256 mismatch)",
                "re-run Phase 8 to rebuild it",
            )
    raise ArtifactCorruptError("compressed model's streams fail their sha256", "re-run Phase 8 to rebuild it")


def _decode_entry(entry: dict, streams: Mapping[str, np.ndarray]) -> Tensor:
    dtype = getattr(torch, entry["dtype"])
    if entry["method"] == "raw":
        return _raw_tensor(streams, entry["shape"], dtype, entry["params"].get("layout", "bytes"))
    if entry["method"] == "usq":
        return _decode_lossy(UniformEncoded.from_streams(entry["shape"], entry["params"], streams), dtype)
    if entry["method"] == "seedlm":
        return _decode_lossy(SeedLMEncoded.from_streams(entry["shape"], entry["params"], streams), dtype)
    if entry["method"] == "vptq":
        return _decode_lossy(VPTQEncoded.from_streams(entry["shape"], entry["params"], streams), dtype)
    raise ArtifactCorruptError(f"unknown method {entry['method']!r} for tensor {entry['name']!r}")


def decode_container(data: bytes) -> dict[str, Tensor]:
    """All tensors of container bytes, in the order they were written (checked by sha256 first)."""
    header, blobs = _split(data)
    symbols: dict[str, dict[str, np.ndarray]] = {entry["name"]: {} for entry in header["tensors"]}
    for tensor, name, blob in _stream_blobs(header, blobs):
        symbols[tensor][name] = decode_symbols(blob)
    return {entry["name"]: _decode_entry(entry, symbols[entry["name"]]) for entry in header["tensors"]}


def decode_model(path: str | Path) -> dict[str, Tensor]:
    """Read a container file written by :func:`write_model`."""
    return decode_container(Path(path).read_bytes())
