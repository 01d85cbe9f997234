"""The bundle manifest: sha256 and size of every file, checked before anything is loaded."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"
BUNDLE_FORMAT = "agent_forge.edge_bundle.v1"
_SKIPPED_PARTS = ("__pycache__",)


class ManifestError(ValueError):
    """A bundle file is missing, changed or unlisted in a way that makes the bundle untrustworthy."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(folder: Path) -> list[str]:
    """Every file of the bundle except the manifest and interpreter caches, as sorted posix paths."""
    files = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and rel.as_posix() != MANIFEST and not set(rel.parts) & set(_SKIPPED_PARTS):
            files.append(rel.as_posix())
    return files


def describe_files(folder: Path) -> dict[str, dict[str, Any]]:
    return {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
            for name in bundle_files(folder)}


def _safe(name: object) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\0" in name:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts


def confined(folder: str | Path, name: object, what: str = "bundle file") -> Path:
    """The resolved path of ``name`` inside the bundle ``folder``: a relative posix path without ``..`` whose
    symlinks, once followed, stay inside the folder; anything else is a ``ManifestError``."""
    root = Path(folder).resolve()
    if not _safe(name):
        raise ManifestError(f"{what} {name!r} is not a relative path inside the bundle; re-create the bundle")
    path = (root / str(name)).resolve()
    if path != root and root not in path.parents:
        raise ManifestError(f"{what} {name!r} leads outside the bundle (to {path}); re-create the bundle")
    return path


def read_manifest(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ManifestError(f"cannot read {path}: {err}") from err
    if manifest.get("format") != BUNDLE_FORMAT or not isinstance(manifest.get("files"), dict):
        raise ManifestError(f"{path} is not an edge bundle manifest ({BUNDLE_FORMAT})")
    return manifest


def verify_manifest(folder: str | Path) -> dict[str, Any]:
    """Check the size and sha256 of every listed file and that no file was added; returns the manifest."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    listed = manifest["files"]
    for name, entry in listed.items():
        path = confined(folder, name)
        if not path.is_file():
            raise ManifestError(f"bundle file {name} is missing")
        if path.stat().st_size != entry["bytes"] or sha256_file(path) != entry["sha256"]:
            raise ManifestError(f"bundle file {name} does not match its sha256 in the manifest")
    extra = sorted(set(bundle_files(folder)) - set(listed))
    if extra:
        raise ManifestError(f"bundle holds files the manifest does not list: {extra[:5]}")
    return manifest
