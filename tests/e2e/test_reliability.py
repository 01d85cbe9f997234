"""Faults a real run meets: repeated SIGKILL + resume ends with the uninterrupted registry and no orphaned
files, while a reader process hammers the registry without ever seeing a lock error."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from agent_forge.storage.atomic import OLD_MARK, TMP_MARK
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.snapshot import registry_snapshot, snapshot_difference
from support.e2e import ROOT, SESSION

MIN_KILLS = 10
READER = """
import os, sys, time
from agent_forge.storage.registry import ModelRegistry
path, ready, stop = sys.argv[1], sys.argv[2], sys.argv[3]
while not os.path.exists(ready) and not os.path.exists(stop):  # the schema exists once the session is made
    time.sleep(0.05)
registry, reads = ModelRegistry(path, readonly=True), 0
while not os.path.exists(stop):
    for s in registry.list_sessions():
        registry.metrics(s["session_id"]); registry.phase_runs(s["session_id"])
    reads += 1
    time.sleep(0.02)
print(reads)
"""


def _start(workspace: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "agent_forge", "--quiet", "--workspace", str(workspace), *args],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _progress_mark(workspace: Path) -> int:
    """Grows whenever the run writes anything (log lines, checkpoints, registry pages)."""
    log = workspace / "sessions" / SESSION / "logs" / "session.jsonl"
    wal = workspace / "registry" / "model_registry.db-wal"
    return sum(p.stat().st_size for p in (log, wal) if p.exists())


def _kill_after_progress(proc: subprocess.Popen, workspace: Path, rng: random.Random) -> bool:
    """SIGKILL ``proc`` at a random moment after it made progress; False when it finished first."""
    mark = _progress_mark(workspace)
    while proc.poll() is None and _progress_mark(workspace) == mark:
        time.sleep(0.05)
    deadline = time.time() + rng.uniform(0.5, 6.0)
    while proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def _continue_args(workspace: Path) -> tuple[str, ...]:
    """`resume` once the session exists; a kill before it was created means starting the run again."""
    registry_path = workspace / "registry" / "model_registry.db"
    exists = False
    if registry_path.exists():
        registry = ModelRegistry(registry_path)  # a run killed before its schema was written has no tables
        exists = any(s["session_id"] == SESSION for s in registry.list_sessions())
        registry.close()
    return ("resume", SESSION) if exists else ("run", "--preset", "smoke", "--name", SESSION)


def test_repeated_sigkill_and_resume_match_the_uninterrupted_run(smoke_run, tmp_path):
    reference_ws, reference = smoke_run
    assert reference.returncode == 0, reference.stderr[-3000:]
    workspace, stop_flag = tmp_path / "victim", tmp_path / "stop"
    ready = workspace / "sessions" / SESSION / "config.yaml"
    database = workspace / "registry" / "model_registry.db"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(database), str(ready), str(stop_flag)],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rng, kills = random.Random(2026), 0
    proc = _start(workspace, "run", "--preset", "smoke", "--name", SESSION)
    while kills < MIN_KILLS and _kill_after_progress(proc, workspace, rng):
        kills += 1
        proc = _start(workspace, *_continue_args(workspace))
    proc.wait(1200)
    assert proc.returncode == 0, proc.stderr.read().decode()[-3000:]
    stop_flag.write_text("stop")
    out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0 and int(out) > 0, err[-2000:]
    assert kills >= MIN_KILLS, f"the run finished after only {kills} kills"
    expected = registry_snapshot(ModelRegistry(reference_ws / "registry" / "model_registry.db"), SESSION)
    actual = registry_snapshot(ModelRegistry(workspace / "registry" / "model_registry.db"), SESSION)
    assert snapshot_difference(expected, actual) == {}  # only what differs: a full diff of both is too long
    leftovers = [p for p in workspace.rglob("*") if TMP_MARK in p.name or OLD_MARK in p.name]
    assert leftovers == []
