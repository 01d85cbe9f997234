"""The static run report: one self-contained HTML file (plotly.js and charts inline) plus a Markdown summary.

A run can be shared without the dashboard: the HTML opens offline in any browser (nothing is fetched from a
CDN), the Markdown reads well in a repository or an issue.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from agent_forge.storage.artifacts import SIZE_DEFINITION
from agent_forge.storage.atomic import atomic_write_text
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from agent_forge.ui import charts
from agent_forge.ui.data import DashboardData, PhaseRow, accuracy_cells, chart_groups


def trajectory_head(rows: list[dict[str, Any]]) -> list[str]:
    """Column names; the accuracy ones come from the rows (multiple choice names its chance level)."""
    kinds = list(accuracy_cells(rows[-1])) if rows else ["accuracy (95% CI)"]
    return ["phase", "status", "seconds", "perplexity", *kinds, "size MB", "latency ms", "hand-off",
            "worse than before"]
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px}
th{background:#f0f4fa;text-align:left}.chart{margin:1em 0}h2{border-bottom:1px solid #ddd}"""


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "-"
    return str(value)


def _timeline_rows(rows: list[PhaseRow]) -> list[list[Any]]:
    return [[r.phase, r.status, r.duration_s, len(r.models),
             f"{r.handoff} -> {r.handoff_target}" if r.handoff else "-", _passed(r), r.error or ""]
            for r in rows]


def _passed(row: PhaseRow) -> str:
    checks = row.handoff_checks
    return f"{sum(c['passed'] for c in checks)}/{len(checks)}" if checks else "-"


def _trajectory_rows(rows: list[dict[str, Any]]) -> list[list[Any]]:
    return [[r["phase"], r["status"], r["seconds"], r["perplexity"], *accuracy_cells(r).values(), r["size_mb"],
             r["latency_ms"], r["handoff"], ", ".join(r["worse"]) or "-"] for r in rows]


def _curve_rows(points: list[dict[str, Any]]) -> list[list[Any]]:
    return [[p["label"], p["role"], p["bytes"], p["perplexity"], charts.accuracy_text(p)]
            for p in sorted(points, key=lambda p: p["bytes"])]


def _model_rows(models: list[dict[str, Any]]) -> list[list[Any]]:
    return [[m["model_id"], m["phase_name"], m["parameters"], m["size_mb"], m["parents"]] for m in models]


TIMELINE_HEAD = ["phase", "status", "seconds", "models", "hand-off", "checks passed", "error"]
CURVE_HEAD = ["file", "role", "bytes", "perplexity (selection)", "accuracy per kind (selection)"]
MODEL_HEAD = ["model", "phase", "parameters", "size MB", "came from"]


class _Html:
    """Collects escaped HTML; every chart is a div drawn by the one inline copy of plotly.js."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.charts = 0

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str) -> None:
        self.parts.append(f"<p>{html.escape(text)}</p>")

    def table(self, head: Sequence[str], rows: list[list[Any]]) -> None:
        cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                       for row in rows)
        self.parts.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>")

    def chart(self, figure: go.Figure) -> None:
        self.charts += 1
        div = figure.to_html(full_html=False, include_plotlyjs=False, div_id=f"chart-{self.charts}",
                             config={"displaylogo": False, "responsive": True})
        self.parts.append(f'<div class="chart">{div}</div>')

    def document(self, title: str) -> str:
        return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style><script type='text/javascript'>{get_plotlyjs()}</script></head>"
                f"<body>{''.join(self.parts)}</body></html>")


def _md_table(head: Sequence[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return _fmt(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _html_report(data: DashboardData, session_id: str, generated: str) -> str:
    session = data.session(session_id)
    page = _Html()
    page.heading(f"Agent Forge run report: {session_id}", 1)
    page.para(f"status {session['status']}, {session['progress_percent'] or 0:.0f}% done, preset "
              f"{session['preset']}; started {session['start_time']}, ended {session['end_time'] or '-'}; "
              f"report written {generated}")
    if session.get("error"):
        page.para(f"error: {session['error']}")
    timeline = data.timeline(session_id)
    page.heading("Phase timeline")
    page.chart(charts.timeline_figure(timeline))
    page.table(TIMELINE_HEAD, _timeline_rows(timeline))
    failed = [[r.phase, c["check"], c["value"], c["limit"], c["message"]]
              for r in timeline for c in r.handoff_checks if not c["passed"]]
    if failed:
        page.heading("Hand-off checks that failed", 3)
        page.table(["phase", "check", "value", "limit", "message"], failed)
    trajectory = data.trajectory(session_id)
    page.heading("Held-out trajectory (D6)")
    page.table(trajectory_head(trajectory), _trajectory_rows(trajectory))
    page.para(SIZE_DEFINITION[0].upper() + SIZE_DEFINITION[1:] + " (the same size as `agent-forge show`).")
    if trajectory:
        page.chart(charts.trajectory_figure(trajectory))
    curve = data.compression_curve(session_id)
    if curve:
        page.heading("Compression: size against quality")
        page.chart(charts.compression_figure(curve))
        page.table(CURVE_HEAD, _curve_rows(curve))
    page.heading("Metrics")
    groups = chart_groups(data.metric_series(session_id))
    for phase in data.metric_phases(session_id):
        page.heading(phase, 3)
        champion = data.champion(session_id, phase)
        if champion:
            page.para("champion: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in champion.items()))
        for group in (g for g in groups if g.phase == phase):
            page.chart(charts.series_figure(group, champion))
    page.heading("Models")
    page.table(MODEL_HEAD, _model_rows(data.models(session_id)))
    page.heading("Configuration")
    config = json.dumps(data.session_config(session_id), indent=1, sort_keys=True)
    page.parts.append("<details><summary>resolved configuration</summary>"
                      f"<pre>{html.escape(config)}</pre></details>")
    return page.document(f"Agent Forge report {session_id}")


def _markdown_report(data: DashboardData, session_id: str, generated: str) -> str:
    session = data.session(session_id)
    trajectory = data.trajectory(session_id)
    lines = [f"# Agent Forge run report: {session_id}", "",
             f"- status: **{session['status']}** ({session['progress_percent'] or 0:.0f}% done)",
             f"- preset: {session['preset']}", f"- started: {session['start_time']}",
             f"- ended: {session['end_time'] or '-'}", f"- report written: {generated}",
             "- charts: `report.html` (self-contained, opens offline)", ""]
    if session.get("error"):
        lines += [f"- error: {session['error']}", ""]
    timeline = _timeline_rows(data.timeline(session_id))
    lines += ["## Phase timeline", "", _md_table(TIMELINE_HEAD, timeline), "",
              "## Held-out trajectory (D6)", "",
              _md_table(trajectory_head(trajectory), _trajectory_rows(trajectory)), "",
              SIZE_DEFINITION[0].upper() + SIZE_DEFINITION[1:] + " (the same size as `agent-forge show`).", ""]
    lines += [f"- {r['phase']} made {', '.join(r['worse'])} worse" for r in trajectory if r["worse"]]
    lines += ["", "## Phase results", ""]
    for phase, figures in data.phase_results(session_id).items():
        shown = [[k, v] for k, v in sorted(figures.items()) if not isinstance(v, (dict, list))]
        if shown:
            lines += [f"### {phase}", "", _md_table(["figure", "value"], shown), ""]
    curve = data.compression_curve(session_id)
    if curve:
        lines += ["## Compression: size against quality", "", _md_table(CURVE_HEAD, _curve_rows(curve)), ""]
    lines += ["## Models", "", _md_table(MODEL_HEAD, _model_rows(data.models(session_id))), ""]
    return "\n".join(lines)


def write_report(workspace: Workspace, registry: ModelRegistry, session_id: str,
                 out_dir: str | Path | None = None) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` for a session (default: the session's report folder)."""
    data = DashboardData(registry, workspace)
    data.session(session_id)
    folder = Path(out_dir) if out_dir is not None else workspace.report_dir(session_id)
    folder.mkdir(parents=True, exist_ok=True)
    generated = datetime.now(timezone.utc).isoformat(timespec="seconds")
    html_path, md_path = folder / "report.html", folder / "report.md"
    atomic_write_text(html_path, _html_report(data, session_id, generated))
    atomic_write_text(md_path, _markdown_report(data, session_id, generated))
    return html_path, md_path
