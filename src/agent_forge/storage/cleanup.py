"""Session retention (spec 3.1.3): age limits, failed-session limits, a cap on sessions, WAL upkeep."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import datetime, timezone

from agent_forge.config.schema import CleanupSection
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace


@dataclass(frozen=True)
class CleanupReport:
    removed: list[str]
    kept: int


def _age_days(start_time: str, now: datetime) -> float:
    started = datetime.fromisoformat(start_time)
    if started.tzinfo is None:
        started = started.replace(tzinfo=timezone.utc)
    return (now - started).total_seconds() / 86400.0


class SessionCleanupManager:
    """Deletes whole sessions (files and registry rows) according to a ``CleanupSection`` policy."""

    def __init__(self, workspace: Workspace, registry: ModelRegistry, policy: CleanupSection) -> None:
        self.workspace = workspace
        self.registry = registry
        self.policy = policy

    def remove_session(self, session_id: str) -> None:
        shutil.rmtree(self.workspace.session_dir(session_id), ignore_errors=True)
        self.registry.delete_session(session_id)

    def select_by_policy(self, now: datetime | None = None) -> list[str]:
        """Sessions the policy retires: completed ones past the age, failed ones past theirs, the excess."""
        now = now or datetime.now(timezone.utc)
        sessions = self.registry.list_sessions()
        chosen: list[str] = []
        for s in sessions:
            age = _age_days(s["start_time"], now)
            if (s["status"] == "completed" and age > self.policy.max_session_age_days) or (
                s["status"] == "failed" and age > self.policy.max_failed_session_age_days
            ):
                chosen.append(s["session_id"])
        remaining = [s for s in sessions if s["session_id"] not in chosen and s["status"] != "running"]
        excess = len(sessions) - len(chosen) - self.policy.max_sessions_total
        if excess > 0:
            oldest_first = sorted(remaining, key=lambda s: s["start_time"])
            chosen.extend(s["session_id"] for s in oldest_first[:excess])
        return chosen

    def select(self, age_days: float | None = None, failed: bool = False, everything: bool = False,
               keep: str | None = None, now: datetime | None = None) -> list[str]:
        """Sessions the CLI's ``clean`` flags name (never a running one, never ``keep``)."""
        now = now or datetime.now(timezone.utc)
        chosen = []
        for s in self.registry.list_sessions():
            if s["session_id"] == keep or s["status"] == "running":
                continue
            by_age = age_days is not None and _age_days(s["start_time"], now) > age_days
            if everything or by_age or (failed and s["status"] == "failed"):
                chosen.append(s["session_id"])
        return chosen

    def clean(self, session_ids: list[str]) -> CleanupReport:
        for session_id in session_ids:
            self.remove_session(session_id)
        if session_ids:
            self.checkpoint_and_vacuum()
        return CleanupReport(removed=list(session_ids), kept=len(self.registry.list_sessions()))

    def checkpoint_and_vacuum(self, pages: int = 100) -> dict[str, int]:
        self.registry.checkpoint_wal()
        self.registry.vacuum_incremental(pages)
        return self.registry.file_sizes()

    def on_session_complete(self) -> CleanupReport:
        """The automatic trigger: WAL checkpoint every N completed sessions, then the age policy."""
        completed = [s for s in self.registry.list_sessions() if s["status"] == "completed"]
        if completed and len(completed) % self.policy.checkpoint_every_n_sessions == 0:
            self.checkpoint_and_vacuum()
        if not self.policy.auto_cleanup_enabled:
            return CleanupReport([], len(self.registry.list_sessions()))
        return self.clean(self.select_by_policy())
