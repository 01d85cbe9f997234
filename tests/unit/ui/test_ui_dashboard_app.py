"""Every dashboard page under Streamlit's AppTest on the filled registry (the script runs as in a browser)."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from agent_forge.pipeline.orchestrator import session_lock
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import ENV_WORKSPACE, Workspace
from agent_forge.ui.data import DashboardData, chart_groups
from agent_forge.ui.generate import generate_text, load_for_generation
from support.ui_workspace import DONE, LIVE

SCRIPT = Path(__file__).resolve().parents[3] / "src" / "agent_forge" / "ui" / "dashboard.py"


def _app(root: Path, monkeypatch: pytest.MonkeyPatch, session: str | None = None,
         page: str = "Overview") -> AppTest:
    monkeypatch.setenv(ENV_WORKSPACE, str(root))
    app = AppTest.from_file(str(SCRIPT), default_timeout=120)
    app.run()
    if session:
        app.sidebar.selectbox(key="session").set_value(session)
    app.sidebar.radio(key="page").set_value(page)
    app.run()
    assert not app.exception, app.exception
    return app


def test_overview_of_a_finished_session(filled, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(filled.root, monkeypatch, DONE)
    assert [s.value for s in app.subheader] == ["Sessions", f"Session {DONE}"]
    assert {m.label: m.value for m in app.metric} == {"status": "completed", "progress": "100%",
                                                     "current phase": "-", "models": "11"}
    assert len(app.get("plotly_chart")) == 2  # timeline and trajectory
    tables = [t.value for t in app.dataframe]
    assert set(tables[0]["session_id"]) == {DONE, LIVE}
    timeline = tables[1]
    assert list(timeline["status"]) == ["completed"] * 8 and timeline["hand-off"].iloc[-1] == "passed -> output"
    trajectory = next(t for t in tables if "worse than before" in t.columns)
    assert trajectory.set_index("phase").loc["bitnet", "worse than before"] == "perplexity, loss, accuracy"
    assert not app.warning


def test_overview_warns_about_an_interrupted_session_and_refreshes_a_live_one(
        filled, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(filled.root, monkeypatch, LIVE)
    assert "no process holds the session lock" in app.warning[0].value
    assert {m.label: m.value for m in app.metric}["current phase"] == "quietstar"
    with session_lock(filled.workspace.session_dir(LIVE)):
        live = _app(filled.root, monkeypatch, LIVE)
        assert not live.warning
        assert any("refreshing every 5 s" in c.value for c in live.caption)


def test_metrics_page_draws_every_group(filled, data: DashboardData, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(filled.root, monkeypatch, DONE, "Metrics")
    groups = chart_groups(data.metric_series(DONE))
    assert len(app.get("plotly_chart")) == len(groups)
    assert [s.value for s in app.subheader] == data.metric_phases(DONE)
    assert any("champion" in c.value and "101" in c.value for c in app.caption)
    app.multiselect(key="metric_phases").set_value(["forge"]).run()
    assert [s.value for s in app.subheader] == ["forge"]
    assert len(app.get("plotly_chart")) == len([g for g in groups if g.phase == "forge"])


def test_models_page_shows_metadata_files_and_lineage(filled, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(filled.root, monkeypatch, DONE, "Models")
    assert len(app.dataframe[0].value) == 11
    app.selectbox(key="model_pick").set_value(filled.models["evomerge/champion"]).run()
    captions = " ".join(c.value for c in app.caption)
    assert filled.models["cognate/memory"] in captions and filled.models["final/final"] in captions
    files = app.dataframe[1].value
    assert {"model.safetensors", "config.json", "tokenizer.json"} <= set(files["file"])
    assert len(app.get("graphviz_chart")) == 1
    app.radio(key="model_scope").set_value("all sessions").run()
    assert len(app.dataframe[0].value) == 11 + 5


def test_compare_page_puts_two_models_side_by_side(filled, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(filled.root, monkeypatch, DONE, "Compare")
    app.selectbox(key="compare_a").set_value(filled.models["cognate/reasoning"])
    app.selectbox(key="compare_b").set_value(filled.models["cognate/adaptive"]).run()
    table = app.dataframe[0].value.set_index("field")
    assert table.loc["model_name", "A"] == "reasoning" and table.loc["model_name", "B"] == "adaptive"
    assert table.loc["metadata.final_loss", "B - A"] == pytest.approx(0.2)
    assert len(app.get("plotly_chart")) >= 2  # train/loss and train/lr overlays


def test_generate_page_continues_the_prompt(filled, data: DashboardData, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _app(filled.root, monkeypatch, DONE, "Generate")
    model_id = filled.models["baking/baking"]
    app.selectbox(key="generate_model").set_value(model_id)
    app.text_area(key="generate_prompt").input("Question: what is 7 plus 1? Answer:")
    app.slider(key="generate_tokens").set_value(6)
    app.button(key="generate_button").click().run()
    assert not app.exception, app.exception
    expected = generate_text(load_for_generation(data, model_id), "Question: what is 7 plus 1? Answer:", 6)
    assert app.code[0].value == "Question: what is 7 plus 1? Answer:" + expected


def test_empty_and_missing_workspaces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_WORKSPACE, str(tmp_path / "missing"))
    app = AppTest.from_file(str(SCRIPT), default_timeout=60)
    app.run()
    assert "does not exist" in app.error[0].value
    workspace = Workspace(tmp_path / "empty")
    ModelRegistry(workspace.registry_path).close()
    monkeypatch.setenv(ENV_WORKSPACE, str(workspace.root))
    app = AppTest.from_file(str(SCRIPT), default_timeout=60)
    app.run()
    assert "no sessions yet" in app.info[0].value
