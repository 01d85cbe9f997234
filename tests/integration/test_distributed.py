"""Scale-out under torchrun (D7): 2 gloo processes give the single-process loss curve; a crashed rank fails
the run cleanly and `resume` completes it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent_forge.storage.registry import ModelRegistry

ROOT = Path(__file__).resolve().parents[2]
SHORT = ["--set", "cognate.trunk_steps=8", "--set", "cognate.specialist_steps=2",
         "--set", "cognate.train.checkpoint_every=4", "--set", "cognate.train.eval_every=4",
         "--set", "handoff.cognate->evomerge.min_loss_drop=0.0"]


def _agent_forge(workspace: Path, procs: int, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
                "--master_port", str(29500 + os.getpid() % 1000), "-m", "agent_forge"] if procs > 1 else \
        [sys.executable, "-m", "agent_forge"]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([*launcher, "--quiet", "--workspace", str(workspace), *args], capture_output=True,
                          text=True, env=full_env, cwd=ROOT, timeout=900)


def _trunk_losses(workspace: Path) -> list[float]:
    registry = ModelRegistry(workspace / "registry" / "model_registry.db")
    session = registry.list_sessions()[0]["session_id"]
    rows = registry.metrics(session, phase="cognate", name="train/loss", model="trunk")
    return [row["value"] for row in sorted(rows, key=lambda r: r["step"])]


def test_two_gloo_processes_match_one_process(tmp_path):
    single = _agent_forge(tmp_path / "one", 1, "run", "--preset", "smoke", "--to", "cognate", *SHORT)
    assert single.returncode == 0, single.stderr[-2000:]
    double = _agent_forge(tmp_path / "two", 2, "run", "--preset", "smoke", "--to", "cognate", *SHORT)
    assert double.returncode == 0, double.stderr[-3000:]
    one, two = _trunk_losses(tmp_path / "one"), _trunk_losses(tmp_path / "two")
    assert len(one) == len(two) == 8
    assert two == pytest.approx(one, rel=2e-3)
    registry = ModelRegistry(tmp_path / "two" / "registry" / "model_registry.db")
    assert len(registry.list_sessions()) == 1


def _rank_pid(rank: int, workspace: Path) -> int | None:
    """The pid of the torchrun worker of ``rank`` working in ``workspace``."""
    for entry in Path("/proc").iterdir():
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if f"RANK={rank}".encode() in environ and str(workspace).encode() in cmdline \
                and b"torch.distributed.run" not in cmdline:
            return int(entry.name)
    return None


def test_crashed_rank_fails_cleanly_and_resume_completes(tmp_path):
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                str(29600 + os.getpid() % 1000), "-m", "agent_forge", "--quiet", "--workspace", str(tmp_path),
                "run", "--preset", "smoke", "--to", "cognate", *SHORT]
    proc = subprocess.Popen(launcher, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    checkpoints = tmp_path / "sessions"
    deadline = time.time() + 600
    while not list(checkpoints.glob("*/checkpoints/cognate/trunk/step_00000004")) and time.time() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.2)
    victim = _rank_pid(1, tmp_path)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(300) != 0
    registry = ModelRegistry(tmp_path / "registry" / "model_registry.db")
    session = registry.list_sessions()[0]["session_id"]
    assert registry.get_session(session)["status"] != "completed"
    resumed = _agent_forge(tmp_path, 2, "resume", session, "--to", "cognate")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert registry.get_session(session)["status"] in {"partial", "completed"}
    assert len(_trunk_losses(tmp_path)) == 8


def _champion(workspace: Path) -> dict:
    registry = ModelRegistry(workspace / "registry" / "model_registry.db")
    (model,) = registry.search_models(phase="evomerge")
    meta = model["metadata"]
    return {key: meta[key] for key in ("fitness", "combo_id", "generation", "origin", "fitness_components")}


def test_two_processes_pick_the_single_process_phase2_champion(tmp_path):
    """Phase 2 on the same Phase 1 models: each rank scores its share of every generation, the values are
    gathered, and the champion and its fitness equal those of one process."""
    base = tmp_path / "base"
    first = _agent_forge(base, 1, "run", "--preset", "smoke", "--to", "cognate", *SHORT)
    assert first.returncode == 0, first.stderr[-2000:]
    session = ModelRegistry(base / "registry" / "model_registry.db").list_sessions()[0]["session_id"]
    for name, procs in (("one", 1), ("two", 2)):
        shutil.copytree(base, tmp_path / name)
        done = _agent_forge(tmp_path / name, procs, "resume", session, "--to", "evomerge")
        assert done.returncode == 0, done.stderr[-3000:]
    one, two = _champion(tmp_path / "one"), _champion(tmp_path / "two")
    assert two["combo_id"] == one["combo_id"] and two["origin"] == one["origin"]
    assert two["fitness"] == pytest.approx(one["fitness"], rel=1e-6)
