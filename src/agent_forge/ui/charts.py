"""Plotly figures of ``ui.data`` results: the same figure in the dashboard, the report and a notebook.

Perplexity spans orders of magnitude (an untrained model starts near the vocabulary size), so its axes are
logarithmic. Figures over categories (phases, compression stages) are bars or markers, never lines: a line
between two phases suggests values in between that do not exist.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from agent_forge.config.schema import PHASE_NAMES
from agent_forge.ui.data import ChartGroup, PhaseRow, parse_time

STATUS_COLOURS = {"completed": "#2e7d32", "running": "#1565c0", "failed": "#c62828", "interrupted": "#ef6c00",
                  "pending": "#9e9e9e"}
TRAJECTORY_PANELS = (("perplexity", "held-out perplexity (log)"), ("accuracy", "task accuracy"),
                     ("size_mb", "size (MB)"), ("latency_ms", "decode latency (ms/token)"))


def _layout(fig: go.Figure, title: str, height: int = 360) -> go.Figure:
    """Light styling set directly: applying a named template deep-copies it per figure (slow in reports)."""
    fig.update_layout(title=title, height=height, margin={"l": 50, "r": 20, "t": 50, "b": 40},
                      plot_bgcolor="white", legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(gridcolor="#e8e8e8", zerolinecolor="#d0d0d0")
    fig.update_yaxes(gridcolor="#e8e8e8", zerolinecolor="#d0d0d0")
    return fig


def timeline_figure(rows: list[PhaseRow], now: datetime | None = None) -> go.Figure:
    """The eight phases as bars on a clock-time axis; pending phases keep their row, empty."""
    now = now or datetime.now(timezone.utc)
    fig = go.Figure()
    for status in STATUS_COLOURS:
        chosen = [r for r in rows if r.status == status and parse_time(r.started_at) is not None]
        if not chosen:
            continue
        starts = [parse_time(r.started_at) for r in chosen]
        ends = [parse_time(r.ended_at) or now for r in chosen]
        fig.add_trace(go.Bar(
            y=[r.phase for r in chosen], base=[_utc_text(s) for s in starts], orientation="h", name=status,
            x=[max((e - s) / timedelta(milliseconds=1), 1.0) for s, e in zip(starts, ends, strict=True)],
            marker_color=STATUS_COLOURS[status],
            customdata=[[_seconds(r.duration_s), r.handoff or "-"] for r in chosen],
            hovertemplate="%{y}: %{customdata[0]}, hand-off %{customdata[1]}<extra>" + status + "</extra>"))
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(PHASE_NAMES)),
                     range=[-0.5, len(PHASE_NAMES) - 0.5])
    fig.update_xaxes(type="date", title_text="time (UTC)")
    return _layout(fig, "phase timeline", height=340)


def _utc_text(moment: datetime) -> str:
    """Plotly.js reads dates without a zone offset, so pass UTC wall-clock text."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None).isoformat(sep=" ", timespec="milliseconds")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} s" if value < 120 else f"{value / 60:.1f} min"


def log_scale(name: str) -> bool:
    """Quantities drawn on a logarithmic axis: perplexity (exp of the loss)."""
    return "perplexity" in name.lower() or name.lower().endswith("ppl")


def series_figure(group: ChartGroup, champion: dict[str, Any] | None = None) -> go.Figure:
    """One chart of a group's curves against the step (a generation, a training step); one value per stage
    or model as bars."""
    fig = go.Figure()
    if group.kind == "stages":
        fig.add_trace(go.Bar(x=[t.label for t in group.traces], y=[t.series.last for t in group.traces],
                             name=group.key, marker_color="#1565c0"))
    for trace in group.traces if group.kind == "curve" else []:
        mode = "lines" if len(trace.series.steps) > 30 else "lines+markers"
        fig.add_trace(go.Scatter(x=trace.series.steps, y=trace.series.values, mode=mode, name=trace.label))
    title = group.title
    if champion and "fitness" in group.key:
        shown = ", ".join(f"{k.rpartition('/')[2]}={_short(v)}" for k, v in champion.items())
        title += f" | champion {shown}"
    fig.update_xaxes(title_text="stage" if group.kind == "stages" else "step")
    if log_scale(group.key):
        fig.update_yaxes(type="log")
    return _layout(fig, title)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def trajectory_figure(rows: list[dict[str, Any]]) -> go.Figure:
    """D6: held-out perplexity (log axis), accuracy, size and latency after each phase as bars, the value
    before it as an open marker on the bar."""
    fig = make_subplots(rows=2, cols=2, subplot_titles=[title for _, title in TRAJECTORY_PANELS])
    phases = [r["phase"] for r in rows]
    for index, (name, title) in enumerate(TRAJECTORY_PANELS):
        row, col = index // 2 + 1, index % 2 + 1
        after = go.Bar(x=phases, y=[r.get(name) for r in rows], name=f"{title} after", showlegend=False,
                       marker_color="#1565c0")
        before = go.Scatter(x=phases, y=[r.get(f"before_{name}") for r in rows], mode="markers",
                            name=f"{title} before", showlegend=False,
                            marker={"symbol": "circle-open", "size": 9, "color": "#757575"})
        fig.add_trace(after, row=row, col=col)
        fig.add_trace(before, row=row, col=col)
        if log_scale(name):
            fig.update_yaxes(type="log", row=row, col=col)
    return _layout(fig, "held-out trajectory (D6): after each phase (bars), before it (open markers)", height=560)


CURVE_STYLES = {"candidate": ("circle", "#1565c0"), "lossless": ("square", "#757575"),
                "baseline": ("diamond", "#c62828"), "chosen": ("star", "#2e7d32")}


def compression_figure(points: list[dict[str, Any]]) -> go.Figure:
    """Phase 8's size/quality curve: file bytes against perplexity (selection split) for every method and
    step it measured, the file it wrote, and the plain baselines (Q4_0 + xz, xz alone) on the same model."""
    fig = go.Figure()
    families: dict[str, list[dict[str, Any]]] = {}
    for point in points:
        family = point["label"].split(" step")[0] if point["role"] == "candidate" else point["label"]
        families.setdefault(family, []).append(point)
    for family, members in families.items():
        members = sorted(members, key=lambda p: p["bytes"])
        symbol, colour = CURVE_STYLES.get(members[0]["role"], ("circle", "#1565c0"))
        fig.add_trace(go.Scatter(
            x=[p["bytes"] for p in members], y=[p["perplexity"] for p in members], name=family,
            mode="lines+markers" if len(members) > 1 else "markers",
            marker={"symbol": symbol, "size": 12 if members[0]["role"] != "candidate" else 8, "color": colour},
            text=[accuracy_text(p) for p in members],
            hovertemplate="%{x} bytes, perplexity %{y:.4f}<br>%{text}<extra>" + family + "</extra>"))
    fig.update_xaxes(title_text="file bytes")
    fig.update_yaxes(title_text="perplexity (selection split)")
    return _layout(fig, "final: size against quality, with the plain baselines", height=420)


def accuracy_text(point: dict[str, Any]) -> str:
    return ", ".join(f"{kind} {value:.3f}" for kind, value in sorted(point.get("accuracy", {}).items()))


def lineage_dot(nodes: dict[str, dict[str, Any]], edges: list[tuple[str, str]], root: str) -> str:
    """Graphviz DOT text of a lineage (drawn in the browser by Streamlit; no graphviz binary needed)."""
    lines = ["digraph lineage {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb"];']
    for model_id, node in sorted(nodes.items()):
        label = f"{node.get('phase_name', '?')}\\n{node.get('model_name', model_id)}"
        extra = ', fillcolor="#ffe082"' if model_id == root else ""
        lines.append(f'  "{_dot(model_id)}" [label="{_dot(label)}"{extra}];')
    lines.extend(f'  "{_dot(parent)}" -> "{_dot(child)}";' for parent, child in edges)
    lines.append("}")
    return "\n".join(lines)


def _dot(text: str) -> str:
    return str(text).replace('"', '\\"')
