"""Errors a user can act on: each carries the problem and the fix, printed as one line by the CLI."""

from __future__ import annotations


class ForgeError(Exception):
    """Base class for errors caused by input or environment, never by a bug.

    The CLI prints ``str(error)`` as a single red line and exits with code 2, so the message must name the
    problem and the fix without a traceback.
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".")
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = self.problem if not self.fix else f"{self.problem}; fix: {self.fix}"
        return " ".join(text.split())


class ConfigError(ForgeError):
    """A configuration file, preset or override is missing, malformed or names an impossible value."""


class WorkspaceError(ForgeError):
    """The workspace folder cannot be created, written or read."""


class RegistryError(ForgeError):
    """The SQLite registry is locked, corrupt or missing where one is expected."""


class ArtifactCorruptError(ForgeError):
    """A stored file does not match its recorded checksum or cannot be parsed."""


class NotFoundError(ForgeError):
    """A session, model or phase named by the user does not exist."""


class InvalidNameError(ForgeError):
    """A model or session name would escape its folder or is otherwise unsafe."""


class HandoffError(ForgeError):
    """A phase's output failed the hand-off rules of the next phase."""


class DiskFullError(ForgeError):
    """A write ran out of space; the previous version of the file was kept."""


class SandboxUnavailableError(ForgeError):
    """Generated or dataset code cannot run because OS isolation (bubblewrap) is missing or fails to start."""
