"""SIGKILL a running pipeline mid-phase, resume it, and compare with an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent_forge.storage.atomic import OLD_MARK, TMP_MARK
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.snapshot import registry_snapshot, snapshot_difference

ROOT = Path(__file__).resolve().parents[2]


def _start(workspace: Path, session: str, delay: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'tests'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "TINY_STEP_DELAY": delay}
    return subprocess.Popen([sys.executable, str(ROOT / "tests/support/run_tiny_pipeline.py"), str(workspace),
                             session], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for_checkpoint(workspace: Path, session: str, run: str, minimum: int, proc, timeout=60.0) -> None:
    folder = workspace / "sessions" / session / "checkpoints" / "cognate" / run
    deadline = time.time() + timeout
    while time.time() < deadline:
        steps = [int(p.name.split("_")[1]) for p in folder.glob("step_*") if "." not in p.name]
        if steps and max(steps) >= minimum:
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def test_sigkill_mid_phase_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    reference = _start(tmp_path / "ref", "s", "0")
    assert reference.wait(120) == 0, reference.stderr.read().decode()

    victim_ws = tmp_path / "victim"
    proc = _start(victim_ws, "s", "0.03")
    _wait_for_checkpoint(victim_ws, "s", "lm2", 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert ModelRegistry(victim_ws / "registry" / "model_registry.db").get_session("s")["status"] == "running"

    resumed = _start(victim_ws, "s", "0")
    assert resumed.wait(120) == 0, resumed.stderr.read().decode()

    ref_snapshot = registry_snapshot(ModelRegistry(tmp_path / "ref/registry/model_registry.db"), "s")
    got_snapshot = registry_snapshot(ModelRegistry(victim_ws / "registry/model_registry.db"), "s")
    assert snapshot_difference(ref_snapshot, got_snapshot) == {}
    leftovers = [p for p in victim_ws.rglob("*") if TMP_MARK in p.name or OLD_MARK in p.name]
    assert leftovers == []
