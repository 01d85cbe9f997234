"""Issue 25 F3: checksums are checked on the file actually loaded, also in a moved or copied workspace; issue 24:
the registry stores paths relative to the workspace, and migrates a registry that stored them absolute."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import torch

from agent_forge.cli import main
from agent_forge.errors import ArtifactCorruptError
from agent_forge.model_io import load_model, load_ref
from agent_forge.storage.registry import SCHEMA_VERSION, ModelRegistry
from agent_forge.storage.workspace import Workspace
from support.phase_harness import SESSION, seed_model


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


def _as_main_wrote_it(registry_path: Path, old_root: Path) -> None:
    """Turn a registry into one of schema 0, as main wrote it before issue 24: absolute paths under the
    workspace where it was written (``old_root``), ``PRAGMA user_version`` 0. The tables are the same."""
    conn = sqlite3.connect(registry_path)
    with conn:
        conn.execute("UPDATE models SET model_path = ? || '/' || model_path", (str(old_root),))
        conn.execute("UPDATE phase_runs SET artifacts_json = ? WHERE phase_name = 'cognate'",
                     (json.dumps({"report": str(old_root / "sessions" / SESSION / "phase1_cognate" / "r.json"),
                                  "curve": [1.0, 2.0]}),))
        conn.execute("PRAGMA user_version = 0")
    conn.close()


def test_a_registry_from_before_is_migrated_to_relative_paths_on_open(tmp_path: Path, capsys) -> None:
    """A schema-0 registry (absolute paths), its workspace moved: the CLI opens it, the paths become relative
    to the workspace (so a later move needs nothing), and the model loads from the new place."""
    ref = seed_model(tmp_path / "before", "cognate")
    registry = ModelRegistry(Workspace(tmp_path / "before").registry_path)
    assert registry.conn.execute("SELECT model_path FROM models").fetchone()[0] == ref.path.relative_to(
        (tmp_path / "before").resolve()).as_posix()  # what this version writes: relative
    registry.upsert_phase_run(SESSION, "cognate", phase_index=0, status="completed")
    registry.close()
    _as_main_wrote_it(tmp_path / "before" / "registry" / "model_registry.db", (tmp_path / "before").resolve())
    shutil.move(tmp_path / "before", tmp_path / "after")

    main(["--workspace", str(tmp_path / "after"), "show", ref.model_id, "--json"])
    shown = json.loads(capsys.readouterr().out)
    moved = (tmp_path / "after").resolve()
    assert Path(shown["model_path"]) == moved / "sessions" / SESSION / "phase1_cognate" / "seed"
    conn = sqlite3.connect(tmp_path / "after" / "registry" / "model_registry.db")
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("SELECT model_path FROM models").fetchone()[0] == f"sessions/{SESSION}/phase1_cognate/seed"
    stored = json.loads(conn.execute("SELECT artifacts_json FROM phase_runs").fetchone()[0])
    assert stored == {"report": f"sessions/{SESSION}/phase1_cognate/r.json", "curve": [1.0, 2.0]}
    conn.close()

    shutil.move(tmp_path / "after", tmp_path / "again")  # relative now: moving again needs no rewrite
    registry = ModelRegistry(Workspace(tmp_path / "again").registry_path, readonly=True)
    assert registry.phase_runs(SESSION)[0]["artifacts"]["report"] == str(
        (tmp_path / "again").resolve() / "sessions" / SESSION / "phase1_cognate" / "r.json")
    load_model(load_ref(registry, ref.model_id))


def test_paths_outside_the_workspace_are_kept_as_given(tmp_path: Path) -> None:
    registry = ModelRegistry(Workspace(tmp_path / "ws").registry_path)
    registry.register_model({"model_id": "m", "session_id": "s", "phase_name": "cognate", "model_name": "m",
                             "model_path": "/elsewhere/m", "metadata": {"note": "/not/ours", "n": 1}})
    row = registry.get_model("m")
    assert row["model_path"] == "/elsewhere/m" and row["metadata"] == {"note": "/not/ours", "n": 1}
