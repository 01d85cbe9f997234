"""The dashboard's read-only queries on a filled registry and on a real (tiny) orchestrator run."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from agent_forge.config.schema import PHASE_NAMES
from agent_forge.errors import RegistryError
from agent_forge.pipeline.orchestrator import session_lock
from agent_forge.storage.registry import ModelRegistry
from agent_forge.ui.data import DashboardData, Series, chart_groups, lock_held, metric_family
from support.ui_workspace import DONE, LIVE, SPECIALISTS


def test_opens_read_only_and_never_writes(data: DashboardData) -> None:
    with pytest.raises(RegistryError, match="read-only"):
        data.registry.update_session(DONE, status="failed")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        data.registry.conn.execute("DELETE FROM metrics")
    assert data.session(DONE)["status"] == "completed"


def test_missing_registry_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="does not exist"):
        DashboardData.open(tmp_path)
    assert not (tmp_path / "registry" / "model_registry.db").exists()


def test_reader_in_a_transaction_does_not_block_the_writer(tmp_path: Path) -> None:
    (tmp_path / "registry").mkdir()
    writer = ModelRegistry(tmp_path / "registry" / "model_registry.db")
    writer.create_session("s1", "smoke", {})
    reader = DashboardData.open(tmp_path)
    reader.registry.conn.execute("BEGIN")
    assert reader.metric_series("s1") == []  # the read snapshot is now pinned
    started = time.perf_counter()
    writer.log_metrics([("s1", "cognate", "trunk", 1, "train/loss", 3.0)])
    assert time.perf_counter() - started < 1.0
    assert reader.metric_series("s1") == []  # still the old snapshot
    reader.registry.conn.execute("COMMIT")
    assert [s.values for s in reader.metric_series("s1")] == [[3.0]]


def test_sessions_with_status_progress_and_counts(data: DashboardData) -> None:
    rows = {r["session_id"]: r for r in data.sessions()}
    assert set(rows) == {DONE, LIVE}
    assert (rows[DONE]["status"], rows[DONE]["progress_percent"]) == ("completed", 100.0)
    assert (rows[LIVE]["status"], rows[LIVE]["current_phase"], rows[LIVE]["progress_percent"]) == (
        "running", "quietstar", 25.0)
    assert rows[DONE]["n_models"] == len(SPECIALISTS) + 1 + 7  # trunk, specialists, one per later phase
    assert rows[DONE]["n_metrics"] > rows[LIVE]["n_metrics"] > 0
    assert rows[LIVE]["process_alive"] is False and not data.is_live(LIVE)


def test_a_held_session_lock_makes_the_session_live(filled, data: DashboardData) -> None:
    with session_lock(filled.workspace.session_dir(LIVE)):
        assert data.process_alive(LIVE) is True
        assert data.is_live(LIVE)
        assert not data.is_live(DONE)
    assert data.process_alive(LIVE) is False


def test_lock_held_reads_the_kernel_table(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    assert lock_held(lock) is False
    with session_lock(tmp_path):
        assert lock_held(lock) is True
    assert lock_held(lock) is False


def test_timeline_of_a_finished_and_a_running_session(data: DashboardData) -> None:
    done = data.timeline(DONE)
    assert [r.phase for r in done] == list(PHASE_NAMES)
    assert all(r.status == "completed" and r.handoff == "passed" for r in done)
    assert [r.duration_s for r in done] == [60.0 + 15 * i for i in range(8)]
    assert [r.handoff_target for r in done] == [*PHASE_NAMES[1:], "output"]
    assert len(done[0].models) == len(SPECIALISTS) and all(c["passed"] for c in done[0].handoff_checks)
    live = {r.phase: r for r in data.timeline(LIVE)}
    assert live["evomerge"].status == "completed" and live["quietstar"].status == "running"
    assert live["quietstar"].duration_s >= 29.0 and live["quietstar"].handoff is None
    assert all(live[p].status == "pending" and live[p].duration_s is None for p in PHASE_NAMES[3:])


def test_trajectory_says_which_phase_made_what_worse(data: DashboardData) -> None:
    rows = {r["phase"]: r for r in data.trajectory(DONE)}
    assert list(rows) == list(PHASE_NAMES)
    assert rows["cognate"]["before_perplexity"] == 500.0 and rows["cognate"]["perplexity"] == 40.0
    assert set(rows["bitnet"]["worse"]) == {"perplexity", "loss", "accuracy"}
    assert rows["forge"]["worse"] == [] and rows["bitnet"]["size_mb"] < rows["bitnet"]["before_size_mb"]
    assert all(r["handoff"] == "passed" for r in rows.values())


def test_metric_series_and_their_charts(data: DashboardData) -> None:
    series = data.metric_series(DONE, phase="cognate")
    loss = {s.model: s for s in series if s.name == "train/loss"}
    assert set(loss) == {"trunk", *SPECIALISTS}
    assert loss["trunk"].steps == list(range(1, 31)) and loss["trunk"].values[0] > loss["trunk"].values[-1]
    groups = {(g.phase, g.key): g for g in chart_groups(data.metric_series(DONE))}
    labels = sorted(t.label for t in groups[("cognate", "train/loss")].traces)
    assert labels == sorted(["trunk", *SPECIALISTS])
    assert [t.label for t in groups[("bitnet", "train/loss")].traces] == ["bitnet"]
    evolution = {g.key: g for g in chart_groups(data.metric_series(DONE, phase="evomerge"))}
    assert sorted(t.label for t in evolution["fitness"].traces) == [
        "avg_fitness", "best_fitness", "champion_fitness", "min_fitness"]
    assert len(evolution["combo_usage"].traces) == 8  # combo_usage_0..7 in one chart
    assert "generation" not in evolution  # a counter equal to its step draws nothing
    for phase, key in (("quietstar", "thoughts/coherence"), ("forge", "curriculum/level"),
                       ("edge", "stage/compression_ratio"), ("edge", "stage/perplexity")):
        assert key in {g.key for g in chart_groups(data.metric_series(DONE, phase=phase))}
    cognate = [(g.kind, g.title) for g in chart_groups(data.metric_series(DONE, phase="cognate"))]
    assert ("curve", "cognate: eval/loss") in cognate  # the trunk's evaluations over its training
    assert ("stages", "cognate: eval/loss per model") in cognate  # one final evaluation per specialist
    stages = {g.key: g for g in chart_groups(data.metric_series(DONE, phase="final")) if g.kind == "stages"}
    assert set(stages) == {"bytes", "ratio", "perplexity"}
    assert [t.label for t in stages["ratio"].traces] == ["stage:seedlm", "stage:vptq", "stage:entropy"]
    assert [t.series.last for t in stages["ratio"].traces] == [4.0, 8.0, 16.0]
    # single points (phase/duration_seconds) are left to tables, never drawn as one-dot charts
    assert not any(g.key.startswith("phase/") for g in chart_groups(data.metric_series(DONE)))


def test_long_curves_are_thinned_but_keep_the_last_point(data: DashboardData) -> None:
    full = data.metric_series(DONE, phase="forge", name="curriculum/level")[0]
    thin = data.metric_series(DONE, phase="forge", name="curriculum/level", max_points=7)[0]
    assert len(full.steps) == 40 and 7 <= len(thin.steps) <= 8
    assert thin.steps[-1] == full.steps[-1] and thin.values[-1] == full.values[-1]
    assert set(thin.steps) <= set(full.steps)


def test_metric_family_grouping() -> None:
    assert metric_family("generation/best_fitness") == ("generation", "fitness")
    assert metric_family("train/loss_avg_100") == ("train", "loss")
    assert metric_family("compression_ratio") == ("", "compression_ratio")
    assert metric_family("combo_usage_7") == ("", "combo_usage")
    assert metric_family("champion_fitness") == ("", "fitness")
    flat = [Series("cognate", "a", "x/loss", [1], [1.0], [0.0]),  # one point, one model: a table row
            Series("cognate", "a", "x/acc", [1, 2], [3.0, 1.0], [0.0, 0.0]),
            Series("cognate", "a", "x/generation", [1, 2], [1.0, 2.0], [0.0, 0.0])]  # a step counter
    assert [g.key for g in chart_groups(flat)] == ["x/acc"]


def test_champion_and_final_values(data: DashboardData) -> None:
    champion = data.champion(DONE, "evomerge")
    assert champion["champion_combo_binary"] == "101" and champion["champion_combo_id"] == 5
    assert champion["champion_fitness"] == pytest.approx(0.5 + 0.3 * (1 - 2.718281828 ** (-10 / 3)))
    finals = {(r["model"], r["name"]): r for r in data.final_values(DONE, "cognate")}
    assert finals[("trunk", "train/loss")]["step"] == 30 and finals[("trunk", "train/loss")]["points"] == 30
    assert finals[("phase", "phase/duration_seconds")]["value"] == 60.0


def test_lineage_walks_both_ways(filled, data: DashboardData) -> None:
    champion = filled.models["evomerge/champion"]
    lineage = data.lineage(champion)
    trunk = f"{DONE}__cognate__trunk"
    assert set(lineage.ancestors()) == {trunk, *(filled.models[f"cognate/{s}"] for s in SPECIALISTS)}
    assert lineage.descendants() == [filled.models[f"{p}/{p}"] for p in PHASE_NAMES[2:]]
    assert (filled.models["cognate/memory"], champion) in lineage.edges
    assert lineage.nodes[trunk]["phase_name"] == "cognate"
    assert data.lineage(trunk).ancestors() == []


def test_compare_two_models(filled, data: DashboardData) -> None:
    pair = data.compare(filled.models["cognate/reasoning"], filled.models["cognate/memory"])
    rows = {r["field"]: r for r in pair}
    assert rows["parameters"]["same"] and rows["parameters"]["delta"] == 0.0
    assert rows["model_name"]["a"] == "reasoning" and rows["model_name"]["b"] == "memory"
    assert rows["metadata.final_loss"]["delta"] == pytest.approx(0.1)
    assert "metadata.files" not in rows and rows["parents"]["same"]


def test_compare_curves_overlays_shared_metrics(filled, data: DashboardData) -> None:
    groups = data.compare_curves(filled.models["cognate/reasoning"], filled.models["cognate/memory"])
    loss = next(g for g in groups if g.key == "train/loss")
    assert [t.label for t in loss.traces] == ["A reasoning", "B memory"]
    assert loss.traces[0].series.values != loss.traces[1].series.values


def test_queries_on_a_real_orchestrator_run(tmp_path: Path) -> None:
    """Two small real phases through the orchestrator: the rows the dashboard reads are the pipeline's own."""
    from support.run_tiny_pipeline import main as run_tiny

    run_tiny(str(tmp_path), "tiny-run")
    data = DashboardData.open(tmp_path)
    timeline = {r.phase: r for r in data.timeline("tiny-run")}
    assert timeline["cognate"].status == timeline["evomerge"].status == "completed"
    assert timeline["cognate"].duration_s > 0 and timeline["cognate"].handoff == "passed"
    assert timeline["quietstar"].status == "pending"
    loss = {s.model: s for s in data.metric_series("tiny-run", "cognate") if s.name == "train/loss"}
    assert set(loss) == {"lm1", "lm2"} and loss["lm1"].values[-1] < loss["lm1"].values[0]
    merged = data.lineage("tiny-run__evomerge__merged")
    assert set(merged.ancestors()) == {"tiny-run__cognate__lm1", "tiny-run__cognate__lm2"}
    assert data.trajectory("tiny-run")[1]["loss"] is not None
    assert data.sessions()[0]["status"] == "completed"  # the two test phases are its whole sequence


def test_the_old_name_of_the_dashboard_data_still_imports() -> None:
    from agent_forge.ui.data import DashboardData, ForgeData

    assert ForgeData is DashboardData
