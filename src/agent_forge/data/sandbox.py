"""Run generated or dataset code against its asserts under OS isolation.

Each batch of jobs runs in one bubblewrap sandbox (``sandbox_child`` is its supervisor): no network (its own
network namespace), its own PID namespace, a read-only view of only the interpreter's folders plus a 16 MiB
private ``/tmp``, an unprivileged uid with no_new_privs, and per job a forked worker with no process
creation, 1 GiB of address space, CPU and wall-clock limits and no output. Jobs go in one batch so a check
costs one sandbox start, not one per program; should the whole batch have to be killed, the job that was
running counts as failed and the rest run in a fresh sandbox. Without bubblewrap, or where it cannot
create its namespaces, code is refused with ``SandboxUnavailableError``: it never runs unisolated.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent_forge.data.sandbox_child import READY, validate_source
from agent_forge.data.tasks import TaskExample
from agent_forge.errors import SandboxUnavailableError

_CHILD_SOURCE = Path(__file__).with_name("sandbox_child.py").read_text(encoding="utf-8")
_STARTUP_S = 3.0
_TMP_BYTES = 16 << 20
_INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap; "
    "`make setup` does it as root) and allow user namespaces, or run as root"
)

__all__ = ["CodeJob", "check_code_answers", "run_code_jobs", "sandbox_command", "validate_source"]


@dataclass(frozen=True)
class CodeJob:
    """A program, setup lines run after it (e.g. dataset imports) and the asserts that must pass."""

    program: str
    tests: tuple[str, ...]
    setup: tuple[str, ...] = field(default=())


def run_code_jobs(jobs: Sequence[CodeJob], timeout_s: float = 1.0) -> list[bool]:
    """Whether each job's program passes all of its tests, each within ``timeout_s`` seconds."""
    results = [False] * len(jobs)
    pending = list(range(len(jobs)))
    while pending:
        finished = _run_batch([jobs[i] for i in pending], timeout_s)
        for offset, ok in enumerate(finished):
            results[pending[offset]] = ok
        # A short answer means the process was killed while running job len(finished): it failed.
        pending = pending[len(finished) + 1 :] if len(finished) < len(pending) else []
    return results


def _python() -> tuple[str, list[str]]:
    """The base interpreter (not a venv's link) and the folders outside /usr that it needs."""
    executable = os.path.realpath(getattr(sys, "_base_executable", "") or sys.executable)
    folders = {os.path.realpath(sys.base_prefix), os.path.dirname(executable)}
    return executable, sorted(f for f in folders if f != "/usr" and not f.startswith("/usr/"))


def _bind_read_only(folder: str) -> list[str]:
    """bwrap arguments mounting ``folder`` read-only; its parents are created traversable (bwrap would
    copy modes such as /root's 0700, which the unprivileged uid could not pass)."""
    parents = list(reversed(Path(folder).parents))[1:]
    arguments = [a for parent in parents for a in ("--perms", "0755", "--dir", str(parent))]
    return [*arguments, "--ro-bind", folder, folder]


def sandbox_command() -> list[str]:
    """The bubblewrap command that runs the supervisor; SandboxUnavailableError when there is none."""
    bwrap = shutil.which("bwrap")
    if bwrap is None or not sys.platform.startswith("linux"):
        raise SandboxUnavailableError(
            "cannot run generated code: bubblewrap (bwrap), which isolates it, was not found", _INSTALL_HINT
        )
    executable, folders = _python()
    command = [bwrap, "--die-with-parent", "--new-session", "--as-pid-1", "--clearenv"]
    command += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    command += ["--ro-bind", "/usr", "/usr", "--ro-bind-try", "/lib", "/lib", "--ro-bind-try", "/lib64", "/lib64"]
    command += ["--ro-bind-try", "/etc/ld.so.cache", "/etc/ld.so.cache"]
    for folder in folders:
        command += _bind_read_only(folder)
    command += ["--dev", "/dev", "--perms", "1777", "--size", str(_TMP_BYTES), "--tmpfs", "/tmp"]
    command += ["--chdir", "/tmp", "--remount-ro", "/", "--cap-drop", "ALL"]
    if os.geteuid() == 0:
        # No user namespace as root: it would map the sandbox's uid to root outside, where RLIMIT_NPROC does
        # not apply. The supervisor drops to nobody with these two capabilities before it reads any job.
        command += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        command += ["--unshare-user"]
    return [*command, "--", executable, "-I", "-S", "-c", _CHILD_SOURCE]


def _run_batch(jobs: list[CodeJob], timeout_s: float) -> list[bool]:
    request = {
        "timeout_s": timeout_s,
        "jobs": [{"program": j.program, "setup": list(j.setup), "tests": list(j.tests)} for j in jobs],
    }
    try:
        done = subprocess.run(
            sandbox_command(),
            input=json.dumps(request),
            capture_output=True,
            text=True,
            env={},
            timeout=_STARTUP_S + (timeout_s + 0.1) * len(jobs),
            check=False,
        )
        output, errors, timed_out = done.stdout, done.stderr, False
    except subprocess.TimeoutExpired as exc:
        output, errors, timed_out = _text(exc.stdout), "", True
    lines = output.splitlines()
    if lines[:1] != [READY]:
        if timed_out:
            return []
        reason = (errors.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise SandboxUnavailableError(f"cannot run generated code: the sandbox did not start ({reason})", _INSTALL_HINT)
    return _parse_results(lines[1:])


def _text(stream: bytes | str | None) -> str:
    return stream.decode(errors="replace") if isinstance(stream, bytes) else (stream or "")


def _parse_results(lines: list[str]) -> list[bool]:
    results = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if record.get("index") != len(results):
            break
        results.append(bool(record.get("ok")))
    return results


def check_code_answers(
    examples: Sequence[TaskExample], completions: Sequence[str], timeout_s: float = 1.0
) -> list[bool]:
    """Run each code example's tests on ``meta["code_prefix"] + completion`` (other kinds: False)."""
    jobs, where = [], []
    for index, (example, completion) in enumerate(zip(examples, completions, strict=True)):
        if example.kind == "code" and example.meta.get("tests"):
            program = example.meta.get("code_prefix", "") + completion
            jobs.append(
                CodeJob(program, tuple(example.meta["tests"]), tuple(example.meta.get("test_setup", ())))
            )
            where.append(index)
    passed = [False] * len(examples)
    for index, ok in zip(where, run_code_jobs(jobs, timeout_s) if jobs else [], strict=True):
        passed[index] = ok
    return passed
