"""W&B in offline mode: every phase's metrics land in one offline run per session, under the spec's names.

The offline run's ``.wandb`` log is decoded with wandb's own protobuf records (tests/support/wandb_log.py)
and compared value by value with what was logged.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_forge.tracking.sinks import MetricsTracker, WandbSink
from support.wandb_log import history_rows, run_id

LOGGED = [
    ("cognate", "trunk", 1, {"train/loss": 5.5, "train/lr": 1e-3}),
    ("cognate", "trunk", 2, {"train/loss": 4.25, "train/lr": 1e-3}),
    ("cognate", "reasoning", 1, {"train/loss": 5.0}),
    ("cognate", "phase", 0, {"phase/duration_seconds": 12.5, "phase/success": True}),
    ("evomerge", "phase", 1, {"generation/best_fitness": 0.61, "generation/avg_fitness": 0.4}),
    ("evomerge", "phase", 2, {"generation/best_fitness": 0.72, "generation/avg_fitness": 0.5,
                              "phase/champion_combo_binary": "101"}),  # text: not a time series, dropped
]


def test_offline_run_holds_every_phase_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_dir"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    session = "20260101-000000-smoke-wandb1"
    sink = WandbSink(session, tmp_path / "session" / "wandb", "offline", "agent-forge", {"preset": "smoke"})
    tracker = MetricsTracker([sink])
    for phase, model, step, metrics in LOGGED:
        tracker.log(phase, model, step, metrics)
    tracker.close()

    runs = list((tmp_path / "session" / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1 and runs[0].is_dir()
    log = runs[0] / f"run-{session}.wandb"
    assert run_id(log) == session
    rows = history_rows(log)
    assert len(rows) == len(LOGGED)
    assert [r["_step"] for r in rows] == list(range(1, len(LOGGED) + 1))
    assert [r["cognate/trunk/train/loss"] for r in rows if "cognate/trunk/train/loss" in r] == [5.5, 4.25]
    assert rows[1]["cognate/step"] == 2
    assert rows[2]["cognate/reasoning/train/loss"] == 5.0
    assert rows[3]["cognate/phase/duration_seconds"] == 12.5 and rows[3]["cognate/phase/success"] == 1.0
    best = [r["evomerge/generation/best_fitness"] for r in rows if "evomerge/generation/best_fitness" in r]
    assert best == [0.61, 0.72] and rows[5]["evomerge/step"] == 2
    assert not any("champion_combo_binary" in key for row in rows for key in row)


def test_a_resumed_session_continues_the_step_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a crash the session's next offline run must start past the last step, or a sync drops it."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    directory = tmp_path / "session" / "wandb"
    for attempt in range(2):
        tracker = MetricsTracker([WandbSink("resumed-session", directory, "offline", "agent-forge", {})])
        for step in (1, 2, 3):
            tracker.log("forge", "phase", step, {"curriculum/level": float(attempt * 3 + step)})
        tracker.close()
    runs = sorted(directory.rglob("offline-run-*"), key=lambda p: p.stat().st_mtime)
    steps = [[row["_step"] for row in history_rows(run / "run-resumed-session.wandb")] for run in runs]
    levels = [row["forge/curriculum/level"] for run in runs for row in history_rows(run / "run-resumed-session.wandb")]
    assert steps == [[1, 2, 3], [4, 5, 6]] and levels == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_orchestrator_logs_every_phase_into_one_offline_run(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """`tracking.wandb=offline`: both test phases' metrics reach one run, value for value as in SQLite."""
    from agent_forge.config import load_config
    from agent_forge.pipeline import Orchestrator
    from agent_forge.storage.registry import ModelRegistry
    from agent_forge.storage.workspace import Workspace
    from support.run_tiny_pipeline import RULES
    from support.tiny_phases import TEST_PHASES

    monkeypatch.setenv("WANDB_SILENT", "true")
    workspace = Workspace(tmp_path)
    registry = ModelRegistry(workspace.registry_path)
    orchestrator = Orchestrator(workspace, registry, quiet=True, phases=TEST_PHASES)
    config = load_config("smoke", overrides=[*RULES, "tracking.wandb=offline"])
    session = orchestrator.create_session(config, session_id="wandb-session")
    orchestrator.run(session)

    runs = list((workspace.session_dir(session) / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1
    rows = history_rows(runs[0] / f"run-{session}.wandb")
    logged = sorted((key, value) for row in rows for key, value in row.items()
                    if not key.startswith("_") and not key.endswith("/step"))
    stored = sorted((f"{m['phase']}/{m['name']}" if m["model"] == "phase" else
                     f"{m['phase']}/{m['model']}/{m['name']}", m["value"]) for m in registry.metrics(session))
    assert logged == stored
    assert {key.split("/")[0] for key, _ in logged} == {"cognate", "evomerge"}
    assert any(key == "cognate/lm1/train/loss" for key, _ in logged)
    assert any(key == "evomerge/phase/duration_seconds" for key, _ in logged)
