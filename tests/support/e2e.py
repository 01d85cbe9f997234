"""Helpers of the end-to-end tests: run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SESSION = "e2e-smoke"


def agent_forge(workspace: Path, *args: str, timeout: float = 1200, one_thread: bool = True
                ) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; ``one_thread`` pins torch to one thread (tests beside each other share the CPU)."""
    env = {**os.environ, "COLUMNS": "200", **({"OMP_NUM_THREADS": "1"} if one_thread else {})}
    return subprocess.run([sys.executable, "-m", "agent_forge", "--workspace", str(workspace), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=timeout)
