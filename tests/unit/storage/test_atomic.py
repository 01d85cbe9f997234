import errno
import json
import os
from pathlib import Path

import pytest

from agent_forge.errors import DiskFullError, WorkspaceError
from agent_forge.storage import atomic
from agent_forge.storage.atomic import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    crc32_file,
    recover_dir,
    remove_stale_temporaries,
    sha256_bytes,
    sha256_file,
)


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert sha256_file(target) == sha256_bytes(b"two")
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_disk_full_keeps_previous_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "f.json"
    atomic_write_json(target, {"v": 1})

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full)
    with pytest.raises(DiskFullError, match="previous version was kept"):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_unwritable_target_is_a_workspace_error(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        if os.access(folder, os.W_OK):
            pytest.skip("running as a user that ignores permissions")
        with pytest.raises(WorkspaceError):
            atomic_write_bytes(folder / "x", b"1")
    finally:
        folder.chmod(0o700)


def test_atomic_dir_swaps_and_cleans(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("1")
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("2")
    assert (target / "w").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_atomic_dir_failure_keeps_old(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "w").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "w").write_text("2")
        raise RuntimeError("crash while writing")
    assert (target / "w").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_recover_dir_after_crash_between_renames(tmp_path: Path) -> None:
    old = tmp_path / f"model{atomic.OLD_MARK}abc"
    old.mkdir()
    (old / "w").write_text("old")
    (tmp_path / f"model{atomic.TMP_MARK}def").mkdir()
    recover_dir(tmp_path / "model")
    assert (tmp_path / "model" / "w").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_remove_stale_temporaries(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / f"f.json{atomic.TMP_MARK}1234").write_text("x")
    (tmp_path / f"b{atomic.TMP_MARK}99").mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 2
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a"]


def test_crc32_file_reads_in_chunks_and_sees_one_flipped_bit(tmp_path: Path) -> None:
    import zlib

    target = tmp_path / "w.bin"
    payload = os.urandom(10_000)
    target.write_bytes(payload)
    assert crc32_file(target, chunk=999) == f"{zlib.crc32(payload):08x}" == crc32_file(target)
    target.write_bytes(bytes([payload[0] ^ 1]) + payload[1:])
    assert crc32_file(target) != f"{zlib.crc32(payload):08x}"
