"""What a running phase can reach: its session, config, storage, metrics, progress and logger."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent_forge.config.schema import PipelineConfig
from agent_forge.model_io import load_ref
from agent_forge.storage.artifacts import ModelRef, save_artifact, weights_size
from agent_forge.storage.checkpoints import CheckpointManager
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from agent_forge.tracking.progress import ProgressReporter
from agent_forge.tracking.sinks import MetricsTracker, is_main_process


@dataclass
class PhaseContext:
    """Handed to ``Phase.run``; phases never open the registry or the workspace themselves."""

    session_id: str
    phase_name: str
    config: PipelineConfig
    workspace: Workspace
    registry: ModelRegistry
    tracker: MetricsTracker
    progress: ProgressReporter
    logger: Any
    shared: dict[str, Any] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)

    @property
    def phase_config(self) -> Any:
        return self.config.phase_section(self.phase_name)

    @property
    def phase_dir(self) -> Path:
        return self.workspace.phase_dir(self.session_id, self.phase_name)

    @property
    def is_main(self) -> bool:
        return is_main_process()

    def model_id(self, model_name: str) -> str:
        """Deterministic ids so a resumed run registers the same rows as an uninterrupted one."""
        return f"{self.session_id}__{self.phase_name}__{model_name}"

    def log(self, step: int, metrics: dict[str, Any], model: str = "phase") -> None:
        self.tracker.log(self.phase_name, model, step, metrics)

    def drop_metrics_after(self, model: str, step: int) -> None:
        """Forget ``model``'s metrics of this phase logged past ``step``: a resumed run logs them again."""
        if self.is_main:
            self.registry.delete_metrics_after(self.session_id, self.phase_name, model, step)

    def checkpoints(self, run_name: str, keep_last: int = 2) -> CheckpointManager:
        return CheckpointManager(self.workspace.checkpoint_dir(self.session_id, self.phase_name, run_name),
                                 keep_last=keep_last, recover=self.is_main)

    def save_model(
        self,
        model_name: str,
        write_files: Callable[[Path], None],
        metadata: dict[str, Any],
        metrics: dict[str, Any] | None = None,
        parameters: int = 0,
        parents: Iterable[str] = (),
        tags: Iterable[str] = (),
    ) -> ModelRef:
        """Write an artifact folder atomically and register it (rank 0 only writes)."""
        model_id = self.model_id(model_name)
        folder = self.workspace.model_dir(self.session_id, self.phase_name, model_name)
        full_meta = {"model_id": model_id, "phase": self.phase_name, "session_id": self.session_id,
                     "parameters": parameters, "parents": list(parents), **metadata}
        if not self.is_main:
            return ModelRef(model_id, folder, full_meta, parameters)
        info = save_artifact(folder, write_files, full_meta, metrics)
        size_mb, _ = weights_size(full_meta, parameters)
        self.registry.register_model(
            {"model_id": model_id, "session_id": self.session_id, "phase_name": self.phase_name,
             "model_name": model_name, "model_path": str(folder), "size_mb": size_mb,
             "parameters": parameters, "metadata": full_meta, "metadata_sha256": info.metadata_sha256,
             "tags": list(tags)},
            parents=list(parents),
        )
        return ModelRef(model_id, folder, full_meta, parameters, size_mb)

    def load_ref(self, model_id: str) -> ModelRef:
        return load_ref(self.registry, model_id)

    def should_stop(self) -> bool:
        return self.stop_event.is_set()
