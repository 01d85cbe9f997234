"""Storage: atomic writes, artifacts with checksums, the SQLite registry, checkpoints, cleanup.

Checkpoints need torch; they are imported on first use so that registry-only commands start fast.
"""

from typing import Any

from agent_forge.storage.artifacts import ArtifactInfo, read_metadata, save_artifact, verify_artifact
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace, validate_name

__all__ = [
    "ArtifactInfo",
    "CheckpointManager",
    "ModelRegistry",
    "TrainerState",
    "Workspace",
    "read_metadata",
    "save_artifact",
    "validate_name",
    "verify_artifact",
]


def __getattr__(name: str) -> Any:
    if name in ("CheckpointManager", "TrainerState"):
        from agent_forge.storage import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(name)
