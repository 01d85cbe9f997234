"""Run generated or dataset code against its asserts without trusting it.

Every check happens in a separate ``python -I -S`` process (``sandbox_child``) with resource limits,
whitelisted builtins and modules and a per-job alarm; the parent adds a wall-clock kill. Jobs are sent in
one batch so a check costs one process start, not one per program; if the batch must be killed (code
stuck inside a C call), the job that was running counts as failed and the rest run in a fresh process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent_forge.data.sandbox_child import validate_source
from agent_forge.data.tasks import TaskExample

_CHILD = Path(__file__).with_name("sandbox_child.py")
_STARTUP_S = 3.0

__all__ = ["CodeJob", "check_code_answers", "run_code_jobs", "validate_source"]


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


def _run_batch(jobs: list[CodeJob], timeout_s: float) -> list[bool]:
    request = {
        "timeout_s": timeout_s,
        "jobs": [{"program": j.program, "setup": list(j.setup), "tests": list(j.tests)} for j in jobs],
    }
    command = [sys.executable, "-I", "-S", str(_CHILD)]
    with tempfile.TemporaryDirectory(prefix="forge-sandbox-") as workdir:
        try:
            done = subprocess.run(
                command,
                input=json.dumps(request),
                capture_output=True,
                text=True,
                cwd=workdir,
                env={},
                timeout=_STARTUP_S + timeout_s * len(jobs),
                check=False,
            )
            output = done.stdout
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
    return _parse_results(output)


def _parse_results(output: str) -> list[bool]:
    results = []
    for line in output.splitlines():
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
