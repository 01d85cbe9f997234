"""The static report: one self-contained HTML file whose charts hold the registry's numbers, plus Markdown."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from agent_forge.cli import (
    main,
    ui_cmds,  # noqa: F401 - registers dashboard and report
)
from agent_forge.config.schema import PHASE_NAMES
from agent_forge.errors import NotFoundError
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from agent_forge.ui.data import DashboardData, chart_groups
from agent_forge.ui.report import write_report
from support.ui_workspace import DONE, LIVE, SIZE_QUALITY


def _charts(text: str) -> dict[str, dict]:
    """Every ``Plotly.newPlot(id, data, layout)`` call of the page, decoded back into JSON."""
    decoder, found = json.JSONDecoder(), {}
    for match in re.finditer(r'Plotly\.newPlot\(\s*"([^"]+)",\s*', text):
        data, end = decoder.raw_decode(text, match.end())
        layout, _ = decoder.raw_decode(text, re.match(r",\s*", text[end:]).end() + end)
        found[match.group(1)] = {"data": data, "layout": layout}
    return found


@pytest.fixture(scope="module")
def report(filled, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    registry = ModelRegistry(filled.workspace.registry_path, readonly=True)
    html_path, md_path = write_report(filled.workspace, registry, DONE, tmp_path_factory.mktemp("report"))
    return html_path.read_text(encoding="utf-8"), md_path.read_text(encoding="utf-8")


def test_html_is_self_contained(report) -> None:
    html, _ = report
    assert not re.search(r"<script[^>]*\bsrc\s*=", html, re.I)
    assert not re.search(r"<link[^>]*href\s*=\s*[\"']?https?:", html, re.I)
    assert html.count("<script") == 1 + len(_charts(html))  # plotly.js once, then one call per chart
    assert "Plotly.newPlot" in html and len(html) > 1_000_000  # the library itself is inline


def test_charts_hold_the_registry_numbers(report, data: DashboardData) -> None:
    html, _ = report
    charts = _charts(html)
    groups = chart_groups(data.metric_series(DONE))
    assert len(charts) == len(groups) + 3  # timeline, trajectory, compression curve, every metric group
    titles = {c["layout"]["title"]["text"]: c for c in charts.values()}
    loss = titles["cognate: train/loss"]
    trunk = next(t for t in loss["data"] if t["name"] == "trunk")
    series = next(s for s in data.metric_series(DONE, "cognate", "train/loss") if s.model == "trunk")
    assert trunk["x"] == series.steps and trunk["y"] == pytest.approx(series.values)
    fitness = next(t for t in titles if t.startswith("evomerge: fitness"))
    assert "champion" in fitness and "101" in fitness
    timeline = titles["phase timeline"]
    assert sorted(y for trace in timeline["data"] for y in trace["y"]) == sorted(PHASE_NAMES)
    assert any("trajectory" in t for t in titles)
    stages = titles["final: ratio per stage"]["data"][0]
    assert stages["x"] == ["stage:seedlm", "stage:vptq", "stage:entropy"] and stages["y"] == [4.0, 8.0, 16.0]


def test_html_tables_show_timeline_trajectory_and_models(report, filled) -> None:
    html, _ = report
    for phase in PHASE_NAMES:
        assert f"<td>{phase}</td>" in html
    assert "passed -&gt; output" in html and "perplexity, loss, accuracy" in html
    assert all(model_id in html for model_id in filled.models.values())


def test_markdown_summary(report, filled) -> None:
    _, md = report
    assert md.startswith(f"# Agent Forge run report: {DONE}")
    assert "| bitnet | completed | 105 |" in md
    assert "- bitnet made perplexity, loss, accuracy worse" in md
    assert "| champion_combo_binary | 101 |" in md
    assert all(f"| {model_id} |" in md for model_id in filled.models.values())


def test_default_folder_and_an_empty_session_with_markup_in_its_error(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path)
    registry = ModelRegistry(workspace.registry_path)
    registry.create_session("s-empty", "smoke", {"preset": "smoke"})
    registry.update_session("s-empty", status="failed", error="<script>alert(1)</script> broke")
    html_path, md_path = write_report(workspace, registry, "s-empty")
    assert html_path == workspace.report_dir("s-empty") / "report.html" and md_path.exists()
    html = html_path.read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(1)&lt;/script&gt; broke" in html and "<script>alert" not in html
    assert "pending" in html
    with pytest.raises(NotFoundError):
        write_report(workspace, registry, "no-such-session")


def test_report_command(filled, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["--workspace", str(filled.root), "report", LIVE, "--out", str(tmp_path)])
    assert f"report: {tmp_path / 'report.html'}" in capsys.readouterr().out
    assert "| quietstar | running |" in (tmp_path / "report.md").read_text(encoding="utf-8")
    with pytest.raises(SystemExit) as stop:
        main(["--workspace", str(filled.root), "report", "nope"])
    assert stop.value.code == 2 and "does not exist" in capsys.readouterr().err


def test_dashboard_command_line() -> None:
    from agent_forge.cli.ui_cmds import DASHBOARD_SCRIPT, streamlit_command

    command = streamlit_command(Path("/w"), "127.0.0.1", 8600)
    assert command[1:4] == ["-m", "streamlit", "run"] and command[4] == str(DASHBOARD_SCRIPT)
    assert DASHBOARD_SCRIPT.is_file()
    options = command[5:command.index("--")]
    pairs = dict(zip(options[::2], options[1::2], strict=True))
    assert pairs["--server.address"] == "127.0.0.1" and pairs["--server.port"] == "8600"
    assert pairs["--browser.gatherUsageStats"] == "false" and command[-2:] == ["--workspace", "/w"]


def test_dashboard_rejects_a_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["dashboard", "--port", "70000"])
    assert stop.value.code == 2 and "--port" in capsys.readouterr().err


def test_perplexity_on_log_axes_and_categories_as_bars(report) -> None:
    """A line between two phases (or stages) suggests values that do not exist; perplexity spans decades."""
    html, md = report
    charts = _charts(html)
    for chart in charts.values():
        for trace in chart["data"]:
            x = trace.get("x") or []
            if x and all(isinstance(v, str) for v in x) and trace.get("type") != "bar":
                assert "lines" not in trace.get("mode", ""), chart["layout"]["title"]["text"]
    titles = {c["layout"]["title"]["text"]: c for c in charts.values()}
    trajectory = next(c for t, c in titles.items() if "trajectory" in t)
    assert [t["type"] for t in trajectory["data"][:2]] == ["bar", "scatter"]
    assert trajectory["layout"]["yaxis"]["type"] == "log" and trajectory["layout"]["yaxis2"].get("type") != "log"
    assert titles["final: ratio per stage"]["data"][0]["type"] == "bar"
    assert titles["final: perplexity per stage"]["layout"]["yaxis"]["type"] == "log"
    assert "Size MB counts the model's weights" in md and "Size MB counts the model&#x27;s weights" in html


def test_the_compression_curve_plots_the_final_phase_with_its_baselines(report, data: DashboardData) -> None:
    html, markdown = report
    assert data.compression_curve(DONE) == SIZE_QUALITY and data.compression_curve(LIVE) == []
    curve = next(c for c in _charts(html).values() if c["layout"]["title"]["text"].startswith("final: size"))
    traces = {t["name"]: t for t in curve["data"]}
    assert set(traces) == {"usq", "Phase 8 file", "Q4_0 blocks + xz -9e"}
    assert traces["usq"]["x"] == [230_000, 250_000] and traces["usq"]["y"] == pytest.approx([30.9, 29.4])
    assert traces["Q4_0 blocks + xz -9e"]["marker"]["symbol"] == "diamond"
    assert "## Compression: size against quality" in markdown
    assert "| Q4_0 blocks + xz -9e | baseline | 280000 |" in markdown
