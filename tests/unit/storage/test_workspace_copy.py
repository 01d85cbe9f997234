"""Issue 25 F3: checksums are checked on the file actually loaded, also in a moved or copied workspace."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from agent_forge.errors import ArtifactCorruptError
from agent_forge.model_io import load_model, load_ref
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from support.phase_harness import seed_model


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("f3") / "original"
    return root, seed_model(root, "cognate").model_id


def test_a_copied_workspace_verifies_and_loads_its_own_files(original, tmp_path: Path) -> None:
    root, model_id = original
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ref = load_ref(ModelRegistry(Workspace(copy).registry_path), model_id)
    assert copy.resolve() in ref.path.resolve().parents  # not the original's folder
    expected = load_model(load_ref(ModelRegistry(Workspace(root).registry_path), model_id)).state_dict()
    assert all(torch.equal(v, expected[k]) for k, v in load_model(ref).state_dict().items())
    _flip_byte(ref.path / "model.safetensors")
    with pytest.raises(ArtifactCorruptError, match=str(copy)):
        load_ref(ModelRegistry(Workspace(copy).registry_path), model_id)
    load_ref(ModelRegistry(Workspace(root).registry_path), model_id)  # the original is untouched and fine


def test_a_moved_workspace_finds_its_files(tmp_path: Path) -> None:
    model_id = seed_model(tmp_path / "before", "cognate").model_id
    (tmp_path / "before").rename(tmp_path / "after")  # the old folder is gone
    ref = load_ref(ModelRegistry(Workspace(tmp_path / "after").registry_path), model_id)
    assert (tmp_path / "after").resolve() in ref.path.resolve().parents
    load_model(ref)
