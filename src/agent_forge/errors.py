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


# How a full disk reads when a library does not raise OSError(ENOSPC): safetensors' SafetensorError,
# SQLite's OperationalError; torch.save's RuntimeError names neither (see ``disk_full``'s free-space check).
_DISK_FULL_SIGNS = ("os error 28", "no space left on device", "database or disk is full")
_NEARLY_FULL_BYTES = 1 << 20
DISK_FULL_FIX = "free disk space and run again (or `agent-forge resume`)"


def disk_full(exc: BaseException, folder: str | None = None) -> bool:
    """Whether ``exc`` (or an exception it was raised from) means the disk is full.

    With ``folder``, any ``RuntimeError``/``OSError`` also counts when the folder's file system has under
    1 MiB left: torch.save reports ENOSPC only as "unexpected pos" or "file write failed".
    """
    import errno
    import shutil

    current: BaseException | None = exc
    while current is not None:
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if any(sign in str(current).lower() for sign in _DISK_FULL_SIGNS):
            return True
        current = current.__cause__ or current.__context__
    if folder is not None and isinstance(exc, (RuntimeError, OSError)):
        try:
            return shutil.disk_usage(folder).free < _NEARLY_FULL_BYTES
        except OSError:
            return False
    return False
