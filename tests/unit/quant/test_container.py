"""Compressed-model container: exact round trip, atomic writes, sha256 corruption detection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from agent_forge.errors import ArtifactCorruptError
from agent_forge.quant.container import (
    CompressionPlan,
    compress_tensors,
    decode_container,
    decode_model,
    read_header,
    read_metadata,
    write_model,
)
from agent_forge.quant.seedlm import SeedLMConfig
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
    assert codecs <= {"stored", "zstd", "rans"}


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
