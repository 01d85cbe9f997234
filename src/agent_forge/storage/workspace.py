"""The workspace folder: where sessions, models, checkpoints, logs and the registry live (spec 3.1.1).

```
<workspace>/
  registry/model_registry.db
  sessions/<session_id>/
    config.yaml                      resolved configuration of the run
    logs/session.jsonl               structured log
    phase1_cognate/<model_name>/     model.safetensors, config.json, metadata.json, metrics.json, tokenizer.json
    ...
    checkpoints/<phase>/<run>/step_<n>/
```
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from agent_forge.config.schema import PHASE_NAMES
from agent_forge.errors import InvalidNameError, WorkspaceError

ENV_WORKSPACE = "AGENT_FORGE_WORKSPACE"
DEFAULT_WORKSPACE = "./forge_workspace"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def validate_name(name: str, what: str = "name") -> str:
    """Accept names that stay inside their folder: no separators, no '..', no leading dot."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise InvalidNameError(
            f"{what} '{name}' is not allowed",
            "use letters, digits, '_', '-' and '.', without '/' or '..' (at most 128 characters)",
        )
    return name


def resolve_workspace(path: str | Path | None = None) -> Path:
    """The workspace path from the argument, then $AGENT_FORGE_WORKSPACE, then ./forge_workspace."""
    chosen = path or os.environ.get(ENV_WORKSPACE) or DEFAULT_WORKSPACE
    return Path(chosen).expanduser().resolve()


def phase_dir_name(phase_name: str) -> str:
    return f"phase{PHASE_NAMES.index(phase_name) + 1}_{phase_name}"


class Workspace:
    """Paths inside one workspace; creating it checks that it is writable."""

    def __init__(self, root: str | Path | None = None, create: bool = True) -> None:
        self.root = resolve_workspace(root)
        if create:
            self._ensure_writable()

    @classmethod
    def existing(cls, root: str | Path | None = None) -> Workspace:
        """The workspace of a command that needs one already there: a missing folder (a mistyped
        --workspace) is a WorkspaceError, and nothing is created."""
        workspace = cls(root, create=False)
        if not workspace.root.is_dir():
            raise WorkspaceError(f"workspace {workspace.root} does not exist",
                                 f"check --workspace (or ${ENV_WORKSPACE}); `agent-forge run` creates a new one")
        return workspace

    def _ensure_writable(self) -> None:
        try:
            self.sessions_root.mkdir(parents=True, exist_ok=True)
            self.registry_path.parent.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-probe-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise WorkspaceError(
                f"workspace {self.root} is not writable ({exc.strerror or exc})",
                f"pass a writable folder with --workspace or set {ENV_WORKSPACE}",
            ) from None

    @property
    def registry_path(self) -> Path:
        return self.root / "registry" / "model_registry.db"

    @property
    def sessions_root(self) -> Path:
        return self.root / "sessions"

    def session_dir(self, session_id: str) -> Path:
        return self.sessions_root / validate_name(session_id, "session id")

    def phase_dir(self, session_id: str, phase_name: str) -> Path:
        return self.session_dir(session_id) / phase_dir_name(phase_name)

    def model_dir(self, session_id: str, phase_name: str, model_name: str) -> Path:
        return self.phase_dir(session_id, phase_name) / validate_name(model_name, "model name")

    def checkpoint_dir(self, session_id: str, phase_name: str, run_name: str) -> Path:
        return self.session_dir(session_id) / "checkpoints" / phase_name / validate_name(run_name, "run name")

    def log_path(self, session_id: str) -> Path:
        return self.session_dir(session_id) / "logs" / "session.jsonl"

    def progress_path(self, session_id: str) -> Path:
        """The running pipeline's open progress bars with their ETA (``tracking.progress``), for ``status``."""
        return self.session_dir(session_id) / "logs" / "progress.json"

    def config_path(self, session_id: str) -> Path:
        return self.session_dir(session_id) / "config.yaml"

    def bundle_dir(self, session_id: str) -> Path:
        return self.phase_dir(session_id, "edge") / "bundle"

    def report_dir(self, session_id: str) -> Path:
        return self.session_dir(session_id) / "report"
