"""Storage: atomic writes, artifacts with checksums, the SQLite registry, checkpoints, cleanup."""

from agent_forge.storage.artifacts import ArtifactInfo, read_metadata, save_artifact, verify_artifact
from agent_forge.storage.checkpoints import CheckpointManager, TrainerState
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
