"""Issue 25 F4/F6: the recovery a corrupt-artifact error names works as written on a real smoke session, and a
phase the session has completed is not run again (nor the session changed) without --force."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agent_forge.model_io import load_ref
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from support.e2e import agent_forge

SESSION = "recovery"


def _read(workspace: Path, what: Callable[[ModelRegistry], Any]) -> Any:
    """Read the registry with a connection of our own, closed before the next command runs."""
    registry = ModelRegistry(Workspace(workspace).registry_path, readonly=True)
    try:
        return what(registry)
    finally:
        registry.close()


def _session(workspace: Path) -> dict:
    return _read(workspace, lambda registry: registry.get_session(SESSION))


def test_corrupt_output_then_follow_the_message_and_finish(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    first = agent_forge(ws, "--quiet", "run", "--preset", "smoke", "--to", "evomerge", "--name", SESSION)
    assert first.returncode == 0, first.stderr[-2000:]
    before = _session(ws)
    again = agent_forge(ws, "--quiet", "phase", "evomerge", "--session", SESSION)  # F6: nothing to run
    assert again.returncode == 0, again.stderr[-2000:]
    assert _session(ws) == before

    runs = _read(ws, lambda registry: registry.phase_runs(SESSION))
    model_id = next(r for r in runs if r["phase_name"] == "cognate")["output_models"][0]  # evomerge's input
    model = _read(ws, lambda registry: registry.get_model(model_id))
    weights = Path(model["model_path"]) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    failed = agent_forge(ws, "--quiet", "resume", SESSION, "--to", "evomerge")
    assert failed.returncode == 2 and "checksum" in failed.stderr
    assert _session(ws)["status"] != "running"
    commands = re.findall(r"`agent-forge ([^`]+)`", failed.stderr)
    assert commands[0] == f"phase cognate --session {SESSION} --force" and commands[1] == f"resume {SESSION}"
    for command in commands:  # as written; the run asked for phases up to evomerge, so it finishes there
        extra = ["--to", "evomerge"] if command.startswith("resume") else []
        step = agent_forge(ws, "--quiet", *shlex.split(command), *extra)
        assert step.returncode == 0, f"{command}: {step.stderr[-2000:]}"
    assert _session(ws)["status"] == "partial"
    _read(ws, lambda registry: load_ref(registry, model_id))  # the re-created files match their checksums
