"""Compressed-model container: exact round trip, lossless layouts, atomic writes, sha256 corruption detection."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import zstandard

from agent_forge.errors import ArtifactCorruptError
from agent_forge.quant.container import (
    CompressionPlan,
    _raw_tensor,
    compress_tensors,
    decode_container,
    decode_model,
    raw_layouts,
    read_header,
    read_metadata,
    write_model,
)
from agent_forge.quant.entropy import encode_bytes
from agent_forge.quant.seedlm import SeedLMConfig
from agent_forge.quant.ternary_pack import pack_tq1_0
from agent_forge.quant.uniform import UniformConfig
from agent_forge.quant.vptq import VPTQConfig


def sample_tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "embed": 0.02 * torch.randn(64, 32, generator=gen),
        "head": 0.02 * torch.randn(32, 24, generator=gen).half(),
        "norm": torch.ones(32),
        "packed": torch.randint(0, 256, (10, 54), generator=gen, dtype=torch.uint8),
        "steps": torch.arange(5),
        "empty": torch.zeros(0, 3),
    }


PLAN = CompressionPlan({"embed": SeedLMConfig(lfsr_bits=8), "head": VPTQConfig(codebook=16)}, zstd_level=3)


def test_round_trip_is_exact_for_raw_and_equals_the_reconstruction_for_lossy() -> None:
    tensors = sample_tensors()
    compressed = compress_tensors(tensors, PLAN, metadata={"model": "tiny"})
    decoded = decode_container(compressed.data)
    assert list(decoded) == list(tensors)
    for name, tensor in tensors.items():
        assert decoded[name].dtype == tensor.dtype and decoded[name].shape == tensor.shape
        assert torch.equal(decoded[name], compressed.reconstruction[name])
    for name in ("norm", "packed", "steps", "empty"):
        assert torch.equal(decoded[name], tensors[name])
    assert not torch.equal(decoded["embed"], tensors["embed"])  # lossy, yet close
    assert float(((decoded["embed"] - tensors["embed"]) ** 2).mean() / tensors["embed"].var()) < 0.2
    assert read_metadata(compressed.data) == {"model": "tiny"}
    methods = {entry["name"]: entry["method"] for entry in read_header(compressed.data)["tensors"]}
    assert methods == {"embed": "seedlm", "head": "vptq", "norm": "raw", "packed": "raw", "steps": "raw",
                       "empty": "raw"}


def test_file_size_is_the_sum_of_its_streams_plus_a_compact_header() -> None:
    compressed = compress_tensors(sample_tensors(), PLAN, metadata={"note": "x" * 1000})
    streams = sum(item.stored_bytes for item in compressed.tensors.values())
    header = read_header(compressed.data)
    assert sum(s["length"] for t in header["tensors"] for s in t["streams"]) == streams
    assert streams < len(compressed.data) < streams + 800  # the repetitive JSON header is zstd-compressed
    codecs = {s.codec for item in compressed.tensors.values() for s in item.streams.values()}
    assert codecs <= {"stored", "zstd", "xz", "rans"}


def test_write_is_atomic_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    data = compress_tensors(sample_tensors(), PLAN).data
    path = write_model(tmp_path / "sub" / "model.afqz", data)
    assert path.read_bytes() == data
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.afqz"]
    decoded = decode_model(path)
    assert torch.equal(decoded["packed"], sample_tensors()["packed"])


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_model(tmp_path / "model.afqz", b"previous")

    def refuse(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError):
        write_model(path, b"new contents")
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["model.afqz"]


def _flip(data: bytes, position: int) -> bytes:
    damaged = bytearray(data)
    damaged[position] ^= 0x40
    return bytes(damaged)


def test_a_damaged_stream_is_named() -> None:
    data = compress_tensors(sample_tensors(), PLAN).data
    with pytest.raises(ArtifactCorruptError, match=r"stream .* of tensor '(empty|steps)'"):
        decode_container(_flip(data, len(data) - 3))


def test_a_damaged_header_is_detected() -> None:
    data = compress_tensors(sample_tensors(), PLAN).data
    with pytest.raises(ArtifactCorruptError, match="header"):
        decode_container(_flip(data, 60))


@pytest.mark.parametrize("cut", [0, 10, 200])
def test_truncated_files_are_detected(cut: int) -> None:
    data = compress_tensors(sample_tensors(), PLAN).data
    with pytest.raises(ArtifactCorruptError):
        decode_container(data[:cut] if cut else data[:-1])


def test_foreign_files_are_refused() -> None:
    data = compress_tensors(sample_tensors(), PLAN).data
    with pytest.raises(ArtifactCorruptError, match="not an Agent Forge"):
        decode_container(b"GGUF" + data[4:])


def test_lossy_methods_refuse_integer_tensors() -> None:
    with pytest.raises(ValueError):
        compress_tensors({"packed": torch.zeros(4, 4, dtype=torch.uint8)},
                         CompressionPlan({"packed": SeedLMConfig(lfsr_bits=8)}))


def _ternary_blocks(rows: int, cols: int, seed: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    values = rng.choice(np.array([-1, 0, 1], dtype=np.int8), size=(rows, cols), p=[0.35, 0.3, 0.35])
    return torch.from_numpy(pack_tq1_0(values, 0.05))


def test_raw_tensors_take_the_smallest_lossless_layout() -> None:
    gen = torch.Generator().manual_seed(3)
    tensors = {
        "ternary": _ternary_blocks(64, 256, 0),  # packed TQ1_0: the trits code below 1.6 bits
        "fp16": (0.02 * torch.randn(256, 64, generator=gen)).half(),  # predictable sign/exponent byte
        "noise": torch.randint(0, 256, (10, 54), generator=gen, dtype=torch.uint8),  # not TQ1_0 blocks
    }
    compressed = compress_tensors(tensors, CompressionPlan({}, zstd_level=3))
    layouts = {entry["name"]: entry["params"]["layout"] for entry in read_header(compressed.data)["tensors"]}
    assert layouts == {"ternary": "tq1_0", "fp16": "planes", "noise": "bytes"}
    assert "tq1_0" not in raw_layouts(tensors["noise"])
    ternary = compressed.tensors["ternary"]
    assert ternary.stored_bytes < 0.97 * tensors["ternary"].numel()  # trits at their entropy, scales ~free
    decoded = decode_container(compressed.data)
    assert all(torch.equal(decoded[name], tensors[name]) for name in tensors)


def test_usq_round_trips_to_its_reconstruction() -> None:
    gen = torch.Generator().manual_seed(4)
    weight = 0.1 * torch.randn(128, 32, generator=gen)
    importance = torch.rand(128, generator=gen)
    plan = CompressionPlan({"embed": UniformConfig(step=0.25, clusters=2)}, zstd_level=3)
    compressed = compress_tensors({"embed": weight.half()}, plan, importance={"embed": importance})
    decoded = decode_container(compressed.data)["embed"]
    assert decoded.dtype == torch.float16 and torch.equal(decoded, compressed.reconstruction["embed"])
    assert read_header(compressed.data)["tensors"][0]["method"] == "usq"
    assert float(((decoded.float() - weight) ** 2).mean() / weight.var()) < 0.05


def test_a_token_importance_weighs_usq_rows_and_vptq_codes_without_it() -> None:
    # Phase 8 gives the embedding one importance per row (token); VPTQ's weights are one per column
    gen = torch.Generator().manual_seed(5)
    weight = 0.1 * torch.randn(128, 32, generator=gen)
    importance = {"embed": torch.rand(128, generator=gen)}
    plan = CompressionPlan({"embed": VPTQConfig(codebook=16)}, zstd_level=3)
    weighted = compress_tensors({"embed": weight.half()}, plan, importance=importance)
    plain = compress_tensors({"embed": weight.half()}, plan)
    assert torch.equal(weighted.reconstruction["embed"], plain.reconstruction["embed"])
    columns = {"embed": torch.rand(32, generator=gen)}  # one per column: VPTQ weighs its vectors with it
    assert not torch.equal(compress_tensors({"embed": weight.half()}, plan, importance=columns)
                           .reconstruction["embed"], plain.reconstruction["embed"])


def _version_2_file(tensors: dict[str, torch.Tensor]) -> bytes:
    """A container as format version 2 wrote it: every raw tensor one byte stream, no layout parameter."""
    blobs, entries = [], []
    for name, tensor in tensors.items():
        blob = encode_bytes(tensor.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).blob
        blobs.append(blob)
        entries.append({"name": name, "method": "raw", "shape": list(tensor.shape),
                        "dtype": str(tensor.dtype).removeprefix("torch."), "params": {},
                        "streams": [{"name": "data", "length": len(blob), "crc32": zlib.crc32(blob)}]})
    body = b"".join(blobs)
    document = {"version": 2, "tensors": entries, "metadata": {}, "blobs_sha256": hashlib.sha256(body).hexdigest()}
    header = zstandard.ZstdCompressor(level=3).compress(json.dumps(document).encode())
    preamble = struct.pack("<4sHI32s", b"AFQZ", 2, len(header), hashlib.sha256(header).digest())
    return preamble + header + body


def test_version_2_files_still_decode() -> None:
    tensors = {"norm": torch.ones(32).half(), "packed": _ternary_blocks(4, 256, 1)}
    decoded = decode_container(_version_2_file(tensors))
    assert all(torch.equal(decoded[name], tensors[name]) for name in tensors)


def test_an_unknown_raw_layout_is_refused() -> None:
    with pytest.raises(ArtifactCorruptError, match="layout"):
        _raw_tensor({"data": np.zeros(4, np.uint8)}, (4,), torch.uint8, "shuffled")
