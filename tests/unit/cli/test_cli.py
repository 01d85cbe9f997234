"""The CLI as a user meets it: one-line errors, registry commands, JSON output, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_forge.cli import main
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from support.run_tiny_pipeline import main as run_tiny_pipeline

ROOT = Path(__file__).resolve().parents[3]


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def filled_workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    run_tiny_pipeline(str(root), "cli-session")
    return root


def test_unknown_preset_is_one_line_error(tmp_path, capsys):
    code, out, err = _cli(capsys, "--workspace", str(tmp_path), "run", "--preset", "nope")
    text = (out + err).strip()
    assert code == 2
    assert "nope" in text and "Traceback" not in text and len(text.splitlines()) == 1


def test_bad_override_names_the_key(tmp_path, capsys):
    code, out, err = _cli(capsys, "--workspace", str(tmp_path), "run", "--preset", "smoke",
                          "--set", "cognate.trunk_steps=-3")
    text = out + err
    assert code == 2 and "cognate.trunk_steps" in text and "Traceback" not in text


def _empty_workspace(root: Path) -> Path:
    """What `agent-forge run` leaves before its first session: the folders and an empty registry."""
    ModelRegistry(Workspace(root).registry_path).close()
    return root


def test_unknown_phase_and_missing_session(tmp_path, capsys):
    code, out, err = _cli(capsys, "--workspace", str(tmp_path), "phase", "warp")
    assert code == 2 and "warp" in out + err
    code, out, err = _cli(capsys, "--workspace", str(_empty_workspace(tmp_path)), "resume", "no-such-session")
    assert code == 2 and "no-such-session" in out + err


def test_usage_error_is_one_line(tmp_path, capsys):
    code, out, err = _cli(capsys, "--workspace", str(tmp_path), "run", "--no-such-flag")
    assert code == 2 and "Traceback" not in out + err


def test_registry_commands_on_a_filled_workspace(filled_workspace, capsys):
    ws = str(filled_workspace)
    code, out, _ = _cli(capsys, "--workspace", ws, "sessions", "--json")
    assert code == 0
    sessions = json.loads(out)
    assert sessions[0]["session_id"] == "cli-session" and sessions[0]["status"] == "completed"
    code, out, _ = _cli(capsys, "--workspace", ws, "models", "--json")
    models = json.loads(out)
    assert code == 0 and len(models) >= 3
    code, out, _ = _cli(capsys, "--workspace", ws, "show", models[0]["model_id"], "--json")
    assert code == 0 and json.loads(out)["model_id"] == models[0]["model_id"]
    code, out, _ = _cli(capsys, "--workspace", ws, "status", "cli-session")
    assert code == 0 and "cli-session" in out
    code, out, err = _cli(capsys, "--workspace", ws, "show", "missing-model")
    assert code == 2 and "missing-model" in out + err


def test_workspace_under_a_file_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, out, err = _cli(capsys, "--workspace", str(blocker / "ws"), "sessions")
    text = out + err
    assert code == 2 and "Traceback" not in text and len(text.strip().splitlines()) == 1


def test_console_entry_points_run(tmp_path):
    env = {**os.environ, "AGENT_FORGE_WORKSPACE": str(_empty_workspace(tmp_path))}
    for cmd in ([sys.executable, "-m", "agent_forge", "--help"], [sys.executable, "-m", "agent_forge", "sessions"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
        assert proc.returncode == 0, proc.stderr


def test_registry_commands_on_an_empty_workspace(tmp_path, capsys):
    ws = str(_empty_workspace(tmp_path / "empty"))
    for args in (["status"], ["sessions", "--json"], ["models", "--json"], ["vacuum"], ["clean", "--all"]):
        code, out, err = _cli(capsys, "--workspace", ws, *args)
        assert code == 0, (args, out, err)
    code, out, err = _cli(capsys, "--workspace", ws, "clean")
    assert code == 2 and "--age" in out + err


NEEDS_A_WORKSPACE = (["status"], ["sessions"], ["models", "--json"], ["show", "m"], ["eval", "m"], ["report", "s"],
                     ["dashboard"], ["generate", "-m", "m", "hi"], ["export", "s"], ["resume", "s"],
                     ["phase", "evomerge", "--session", "s"], ["vacuum"], ["clean", "--all"])


@pytest.mark.parametrize("args", NEEDS_A_WORKSPACE, ids=lambda a: a[0])
def test_a_missing_workspace_is_refused_and_not_created(tmp_path, capsys, args):
    """A mistyped --workspace: one line naming the folder, exit 2, and the folder is still not there."""
    missing = tmp_path / "typo"
    code, out, err = _cli(capsys, "--workspace", str(missing), *args)
    text = (out + err).strip()
    assert code == 2 and len(text.splitlines()) == 1 and f"workspace {missing} does not exist" in text, text
    assert not missing.exists()


def test_a_folder_without_a_registry_is_refused_and_left_alone(tmp_path, capsys):
    for args in (["sessions"], ["show", "m"], ["generate", "-m", "m", "hi"]):
        code, out, err = _cli(capsys, "--workspace", str(tmp_path), *args)
        assert code == 2 and "is not an Agent Forge workspace" in out + err
    assert list(tmp_path.iterdir()) == []


def test_clean_and_vacuum_on_a_populated_workspace(tmp_path, capsys):
    root = tmp_path / "ws"
    run_tiny_pipeline(str(root), "to-clean")
    code, out, _ = _cli(capsys, "--workspace", str(root), "vacuum")
    assert code == 0 and "registry:" in out
    code, out, _ = _cli(capsys, "--workspace", str(root), "clean", "--all")
    assert code == 0 and "removed 1 session(s)" in out
    code, out, _ = _cli(capsys, "--workspace", str(root), "sessions", "--json")
    assert json.loads(out) == [] and not (root / "sessions" / "to-clean").exists()


def test_phase_in_a_session_applies_set_overrides(tmp_path, capsys):
    """`phase NAME --session S --set k=v` changes that key for the run (and says so); --config is refused."""
    ws = str(tmp_path)
    code, out, err = _cli(capsys, "--workspace", ws, "phase", "cognate", "--preset", "smoke",
                          "--set", "cognate.trunk_steps=2", "--set", "cognate.specialist_steps=1",
                          "--set", "handoff.cognate->evomerge.min_loss_drop=0.0")
    assert code == 0, out + err
    session = json.loads(_cli(capsys, "--workspace", ws, "sessions", "--json")[1])[0]["session_id"]
    code, out, err = _cli(capsys, "--workspace", ws, "phase", "evomerge", "--session", session,
                          "--set", "evomerge.generations=1")
    assert code == 0, out + err
    assert "evomerge.generations" in out
    models = json.loads(_cli(capsys, "--workspace", ws, "models", "--phase", "evomerge", "--json")[1])
    assert models[0]["metadata"]["generations"] == 1
    code, out, err = _cli(capsys, "--workspace", ws, "phase", "evomerge", "--session", session,
                          "--config", str(tmp_path / "x.yaml"))
    assert code == 2 and "--set" in out + err and "Traceback" not in out + err


def test_a_session_stored_before_the_section_rename_resumes(tmp_path, capsys, monkeypatch):
    """A session whose stored config says phase1..phase8 and bake_steps (as the registry of the code before the
    rename holds it) resumes; an old --set key on it works, with one deprecation line."""
    from agent_forge.config import loader
    from agent_forge.storage.registry import ModelRegistry
    from agent_forge.storage.workspace import Workspace

    monkeypatch.setattr(loader, "_aliases_seen", set())
    stored = json.loads((ROOT / "tests" / "fixtures" / "session_config_before_section_names.json").read_text())
    workspace = Workspace(tmp_path, create=True)
    ModelRegistry(workspace.registry_path, create=True).create_session("old-names", "smoke", stored)
    workspace.session_dir("old-names").mkdir(parents=True, exist_ok=True)
    code, out, err = _cli(capsys, "--workspace", str(tmp_path), "resume", "old-names", "--to", "cognate",
                          "--set", "phase1.trunk_steps=2")
    assert code == 0, out + err
    assert "cognate.trunk_steps" in out  # the changed key, under its current name
    notices = [line for line in err.splitlines() if line.startswith("notice:")]
    assert len(notices) == 1 and "'phase1' is now 'cognate'" in notices[0]
    models = json.loads(_cli(capsys, "--workspace", str(tmp_path), "models", "--phase", "cognate", "--json")[1])
    assert len(models) == 4  # the trunk and three specialists
