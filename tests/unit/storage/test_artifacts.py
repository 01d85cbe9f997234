import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from agent_forge.errors import ArtifactCorruptError, NotFoundError
from agent_forge.storage.artifacts import describe_artifact, read_metrics, save_artifact, verify_artifact


def _write(folder: Path) -> None:
    save_file({"w": torch.arange(100, dtype=torch.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"a": 1}')


def _saved(tmp_path: Path):
    return save_artifact(tmp_path / "m", _write, {"name": "m"}, {"loss": 1.5})


def test_save_records_checksums_and_verifies(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    assert set(info.files) == {"model.safetensors", "config.json", "metrics.json"}
    meta = verify_artifact(info.path, info.metadata_sha256)
    assert meta["name"] == "m"
    assert read_metrics(info.path) == {"loss": 1.5}
    assert describe_artifact(info.path).size_bytes == info.size_bytes > 400


def test_truncated_safetensors_detected(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    weights = info.path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-10])
    with pytest.raises(ArtifactCorruptError, match="checksum"):
        verify_artifact(info.path)


def test_flipped_byte_detected(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    weights = info.path / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactCorruptError, match="truncated or modified"):
        verify_artifact(info.path)


def test_bad_metadata_json_detected(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    (info.path / "metadata.json").write_text("{not json")
    with pytest.raises(ArtifactCorruptError, match="unreadable"):
        verify_artifact(info.path)


def test_metadata_edit_detected_against_registry_sum(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    meta = json.loads((info.path / "metadata.json").read_text())
    meta["name"] = "other"
    (info.path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactCorruptError, match="modified after it was registered"):
        verify_artifact(info.path, info.metadata_sha256)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    (info.path / "config.json").unlink()
    with pytest.raises(ArtifactCorruptError, match="missing"):
        verify_artifact(info.path)
    with pytest.raises(NotFoundError):
        verify_artifact(tmp_path / "nope")


def test_metadata_without_checksums_is_corrupt(tmp_path: Path) -> None:
    info = _saved(tmp_path)
    (info.path / "metadata.json").write_text("[1, 2]")
    with pytest.raises(ArtifactCorruptError, match="no file checksums"):
        verify_artifact(info.path)
