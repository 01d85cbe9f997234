"""Helpers of the end-to-end tests: run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SESSION = "e2e-smoke"


def agent_forge(workspace: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "agent_forge", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
