"""Atomic file and folder writes, and sha256 checksums.

A write goes to a temporary sibling, is flushed to disk, then renamed over the target, so a crash or a full
disk leaves either the old version or the new one, never a torn file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agent_forge.errors import DISK_FULL_FIX, DiskFullError, WorkspaceError, disk_full

TMP_MARK = ".tmp-"
OLD_MARK = ".old-"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def crc32_file(path: Path, chunk: int = 1 << 22) -> str:
    """CRC-32 of a file as 8 hex digits: catches torn or corrupted writes more cheaply than sha256, for
    checkpoints rewritten many times per run (Phase 2 writes one per generation). Measured on a 5 MB
    file on an AMD EPYC with SHA instructions: 2.3 ms against 3.3 ms (1.6 against 2.9 ms for the hash
    alone)."""
    value = 0
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            value = zlib.crc32(block, value)
    return f"{value:08x}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _raise_disk_full(target: Path, exc: BaseException) -> None:
    raise DiskFullError(f"disk full while writing {target}; the previous version was kept",
                        DISK_FULL_FIX) from exc


def _raise_io(exc: OSError, target: Path) -> None:
    if exc.errno == errno.ENOSPC:
        _raise_disk_full(target, exc)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise WorkspaceError(f"cannot write {target} ({exc.strerror})",
                             "choose a writable folder with --workspace") from exc
    raise exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file, fsync, rename)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        _raise_io(exc, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces ``target`` as a whole.

    The old folder is first renamed aside and removed only after the new one is in place, so at every instant
    one complete version exists (``recover_dir`` restores it after a crash between the two renames).
    """
    target = Path(target)
    tmp = target.with_name(f"{target.name}{TMP_MARK}{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        yield tmp
        _fsync_tree(tmp)
        old = target.with_name(f"{target.name}{OLD_MARK}{uuid.uuid4().hex[:8]}")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _raise_io(exc, target)
    except Exception as exc:
        full = disk_full(exc, str(tmp.parent))  # before the clean-up frees the space again
        shutil.rmtree(tmp, ignore_errors=True)
        if full:
            _raise_disk_full(target, exc)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())


def recover_dir(target: Path) -> None:
    """Finish or undo an interrupted ``atomic_dir`` swap and drop stale temporaries next to ``target``."""
    target = Path(target)
    parent = target.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f"{target.name}{OLD_MARK}*"))
    if not target.exists() and olds:
        os.replace(olds[-1], target)
        olds = olds[:-1]
    for stale in [*olds, *parent.glob(f"{target.name}{TMP_MARK}*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete every leftover temp file/folder under ``root`` (after a kill -9) and restore swapped folders."""
    root = Path(root)
    removed: list[Path] = []
    if not root.exists():
        return removed
    for old in sorted(root.rglob(f"*{OLD_MARK}*")):
        target = old.with_name(old.name.split(OLD_MARK)[0])
        recover_dir(target)
        removed.append(old)
    for tmp in sorted(root.rglob(f"*{TMP_MARK}*"), reverse=True):
        if not tmp.exists():
            continue
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed
