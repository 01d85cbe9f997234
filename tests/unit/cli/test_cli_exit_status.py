"""The exit status of `agent-forge run` says what happened (issue 25, F12 and F5)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _query(registry: Path, sql: str) -> list[tuple]:
    if not registry.exists():
        return []
    try:
        with sqlite3.connect(f"file:{registry}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:  # schema not written yet, or locked for a moment
        return []


def _start_run(workspace: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "agent_forge", "--workspace", str(workspace), "--quiet"]
    command += ["run", "--preset", "smoke"]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_a_running_phase(process: subprocess.Popen, registry: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read()[-2000:]
        if _query(registry, "SELECT 1 FROM phase_runs WHERE status = 'running'"):
            return
        time.sleep(0.2)
    process.kill()
    pytest.fail("no phase started in time")


@pytest.mark.parametrize(("signum", "expected"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_an_interrupted_run_pauses_and_exits_with_the_signal_status(tmp_path, signum, expected):
    registry = tmp_path / "ws" / "registry" / "model_registry.db"
    process = _start_run(tmp_path / "ws")
    _wait_for_a_running_phase(process, registry)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode == expected, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err
    assert _query(registry, "SELECT status FROM sessions") == [("paused",)]


@pytest.mark.parametrize(
    "window", [("--from", "edge", "--to", "cognate"), ("--to", "nophase"), ("--from", "nophase")]
)
def test_a_bad_phase_window_is_refused_before_a_session_exists(tmp_path, capsys, window):
    from agent_forge.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["--workspace", str(tmp_path / "ws"), "--quiet", "run", "--preset", "smoke", *window])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "\n" not in err and "phase" in err
    assert _query(tmp_path / "ws" / "registry" / "model_registry.db", "SELECT session_id FROM sessions") == []
    sessions = tmp_path / "ws" / "sessions"
    assert not sessions.exists() or not any(sessions.iterdir())
