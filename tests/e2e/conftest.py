"""Shared end-to-end fixtures: one uninterrupted `smoke` run of the whole pipeline through the real CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SESSION = "e2e-smoke"


def agent_forge(workspace: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agent_forge", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workspace = tmp_path_factory.mktemp("e2e")
    proc = agent_forge(workspace, "run", "--preset", "smoke", "--name", SESSION)
    return workspace, proc
