"""Model artifacts: a folder of files whose sha256 sums live in its ``metadata.json``.

Every artifact folder holds the model's own files (``model.safetensors``, ``config.json``, tokenizer, ...),
``metadata.json`` (what the model is, where it came from, and the checksum of every other file) and
``metrics.json``. The folder is written atomically and verified on every load.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_forge.errors import ArtifactCorruptError, NotFoundError
from agent_forge.storage.atomic import atomic_dir, sha256_file

METADATA = "metadata.json"
METRICS = "metrics.json"


@dataclass(frozen=True)
class ModelRef:
    """A registered model: its id, its artifact folder and its (verified) metadata."""

    model_id: str
    path: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    parameters: int = 0
    size_mb: float = 0.0


@dataclass(frozen=True)
class ArtifactInfo:
    """What the registry records about a saved artifact."""

    path: Path
    size_bytes: int
    files: dict[str, str]
    metadata_sha256: str

    @property
    def size_mb(self) -> float:
        return self.size_bytes / 1e6


FLOAT_WEIGHTS = "model.safetensors tensor data (parameters x 4 bytes, fp32)"
SIZE_DEFINITION = ("size MB counts the model's weights in the form its phase delivers them: the fp32 tensors "
                   "(phases 1-3), the packed ternary file (4-6), the bundle's primary format file (edge), the "
                   "compressed file (final); config, tokenizer and metadata files are not counted")


def weights_size(metadata: dict[str, Any], parameters: int) -> tuple[float, str]:
    """The one size of a model, in MB, and the file it counts: what the registry, ``show``, ``models``, the
    report and the model card all give.

    It is the model's weights in the form its phase delivers them. Phases 4-8 record that file's size
    (``size_mb``): the packed ternary file (bitnet, forge, baking), the bundle's primary format file (edge),
    the compressed file (final). A float model (phases 1-3) counts its fp32 parameters, the tensor data of
    ``model.safetensors``. Config, tokenizer, metadata and files kept only to resume training are not counted.
    """
    recorded = metadata.get("size_mb")
    if isinstance(recorded, (int, float)) and not isinstance(recorded, bool):
        counted = metadata.get("size_file") or metadata.get("packed_file") or metadata.get("compressed_file")
        if counted is None and metadata.get("primary_format"):  # an edge model recorded before size_file
            counted = f"bundle file of {metadata['primary_format']}"
        return float(recorded), str(counted or "the phase's output file")
    return int(parameters or 0) * 4 / 1e6, FLOAT_WEIGHTS


def save_artifact(
    target: Path,
    write_files: Callable[[Path], None],
    metadata: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> ArtifactInfo:
    """Write an artifact folder atomically: ``write_files(tmp)`` writes the payload, we add checksums."""
    with atomic_dir(Path(target)) as tmp:
        write_files(tmp)
        _write_json(tmp / METRICS, metrics or {})
        files = {
            p.relative_to(tmp).as_posix(): sha256_file(p)
            for p in sorted(tmp.rglob("*"))
            if p.is_file() and p.name != METADATA
        }
        _write_json(tmp / METADATA, {**metadata, "files": files})
    return describe_artifact(Path(target))


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")


def describe_artifact(folder: Path) -> ArtifactInfo:
    metadata = read_metadata(folder)
    files = metadata.get("files", {})
    size = sum((folder / name).stat().st_size for name in files) + (folder / METADATA).stat().st_size
    return ArtifactInfo(folder, size, dict(files), sha256_file(folder / METADATA))


def read_metadata(folder: Path) -> dict[str, Any]:
    """Parse ``metadata.json``; a missing or malformed file is reported as corruption."""
    folder = Path(folder)
    path = folder / METADATA
    if not folder.is_dir():
        raise NotFoundError(f"artifact folder {folder} does not exist", "check the model id with `agent-forge models`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactCorruptError(
            f"metadata of {folder} is unreadable ({exc.__class__.__name__})",
            "re-run the phase that produced it (`agent-forge phase NAME`) or restore the folder",
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict):
        raise ArtifactCorruptError(f"metadata of {folder} has no file checksums",
                                   "re-run the phase that produced it")
    return data


def verify_artifact(folder: Path, metadata_sha256: str | None = None) -> dict[str, Any]:
    """Check every file against its recorded sha256 (and the metadata itself against the registry's)."""
    folder = Path(folder)
    metadata = read_metadata(folder)
    if metadata_sha256 is not None and sha256_file(folder / METADATA) != metadata_sha256:
        raise ArtifactCorruptError(f"{folder / METADATA} was modified after it was registered",
                                   "re-run the phase that produced it or restore the folder")
    for name, expected in metadata["files"].items():
        path = folder / name
        if not path.is_file():
            raise ArtifactCorruptError(f"{path} is missing", "re-run the phase that produced it")
        if sha256_file(path) != expected:
            raise ArtifactCorruptError(
                f"{path} does not match its checksum (truncated or modified)",
                "re-run the phase that produced it or restore the file",
            )
    return metadata


def read_metrics(folder: Path) -> dict[str, Any]:
    path = Path(folder) / METRICS
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
