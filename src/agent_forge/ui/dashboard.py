"""The Agent Forge dashboard: a Streamlit app over one workspace's registry, opened read-only.

Start it with ``agent-forge dashboard`` (listens on 127.0.0.1 unless told otherwise, D8). It reads the
registry while a pipeline writes it (WAL), and refreshes itself while the selected session's process runs.
Pages: Overview (sessions, phase timeline with hand-offs, D6 trajectory), Metrics (every logged curve,
grouped per phase and quantity), Models (metadata, files, lineage), Compare (two models side by side) and
Generate (a text box over a stored model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import streamlit as st

from agent_forge.errors import ForgeError
from agent_forge.storage.workspace import ENV_WORKSPACE
from agent_forge.ui import charts
from agent_forge.ui.data import DashboardData, accuracy_cells, chart_groups, final_rows
from agent_forge.ui.generate import LoadedModel, generate_text, load_for_generation

PAGES = ("Overview", "Metrics", "Models", "Compare", "Generate")
SESSION_COLUMNS = ["session_id", "preset", "status", "progress_percent", "current_phase", "start_time",
                   "end_time", "n_models", "last_activity", "process_alive"]


def workspace_arg(argv: list[str] | None = None) -> str | None:
    """``--workspace`` after streamlit's ``--`` separator, else $AGENT_FORGE_WORKSPACE, else the default."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workspace", default=None)
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    return known.workspace or os.environ.get(ENV_WORKSPACE)


@st.cache_resource(show_spinner=False)
def open_data(root: str | None) -> DashboardData:
    return DashboardData.open(root)


@st.cache_resource(show_spinner="loading model", max_entries=2)
def cached_model(root: str | None, model_id: str, metadata_sha256: str | None) -> LoadedModel:
    """Keyed by the metadata checksum too, so a model re-registered by a re-run phase is loaded afresh."""
    return load_for_generation(open_data(root), model_id)


def _table(rows: list[dict[str, Any]], key: str, **config: Any) -> None:
    if rows:
        st.dataframe(_uniform(rows), hide_index=True, key=key, column_config=config or None)
    else:
        st.caption("nothing recorded yet")


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Columns mixing types (a check's limit may be a number or a flag) become text: Arrow needs one type."""
    def kind(value: Any) -> str:
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        return "number" if numeric else type(value).__name__

    keys = {k for r in rows for k in r}
    mixed = {k for k in keys if len({kind(r.get(k)) for r in rows if r.get(k) is not None}) > 1
             or any(isinstance(r.get(k), (dict, list)) for r in rows)}
    return [{k: (_text(v) if k in mixed and v is not None else v) for k, v in r.items()} for r in rows]


# ---- Overview ---------------------------------------------------------------------------------------------

def page_overview(data: DashboardData, session_id: str) -> None:
    st.subheader("Sessions")
    sessions = [{k: s.get(k) for k in SESSION_COLUMNS} for s in data.sessions()]
    _table(sessions, "sessions", progress_percent=st.column_config.ProgressColumn(
        "progress", min_value=0, max_value=100, format="%.0f%%"))
    session = data.session(session_id)
    st.subheader(f"Session {session_id}")
    cols = st.columns(4)
    cols[0].metric("status", session["status"])
    cols[1].metric("progress", f"{session['progress_percent'] or 0:.0f}%")
    cols[2].metric("current phase", session["current_phase"] or "-")
    cols[3].metric("models", len(data.models(session_id)))
    if session["status"] == "running" and session["process_alive"] is False:
        st.warning("marked running, but no process holds the session lock: it was interrupted; "
                   f"continue with `agent-forge resume {session_id}`")
    if session.get("error"):
        st.error(session["error"])
    _timeline(data, session_id)
    _trajectory(data, session_id)


def _timeline(data: DashboardData, session_id: str) -> None:
    st.markdown("#### Phase timeline")
    rows = data.timeline(session_id)
    st.plotly_chart(charts.timeline_figure(rows), key="timeline_chart")
    table = [{"phase": r.phase, "status": r.status, "seconds": r.duration_s, "models": len(r.models),
              "hand-off": f"{r.handoff} -> {r.handoff_target}" if r.handoff else "-",
              "checks passed": f"{sum(c['passed'] for c in r.handoff_checks)}/{len(r.handoff_checks)}"
              if r.handoff_checks else "-", "error": r.error or ""} for r in rows]
    _table(table, "timeline_table")
    with st.expander("hand-off checks"):
        for row in rows:
            if row.handoff_checks:
                st.markdown(f"**{row.phase} -> {row.handoff_target}**: {row.handoff}")
                _table(row.handoff_checks, f"checks_{row.phase}")


def _trajectory(data: DashboardData, session_id: str) -> None:
    st.markdown("#### Held-out trajectory (D6)")
    rows = data.trajectory(session_id)
    if not rows:
        st.caption("no phase has finished yet")
        return
    shown = [{"phase": r["phase"], "status": r["status"], "perplexity": r["perplexity"],
              **accuracy_cells(r), "size MB": r["size_mb"], "latency ms": r["latency_ms"],
              "hand-off": r["handoff"] or "-", "worse than before": ", ".join(r["worse"]) or "-"}
             for r in rows]
    _table(shown, "trajectory_table")
    st.plotly_chart(charts.trajectory_figure(rows), key="trajectory_chart")


# ---- Metrics ----------------------------------------------------------------------------------------------

def page_metrics(data: DashboardData, session_id: str) -> None:
    phases = data.metric_phases(session_id)
    if not phases:
        st.info("no metrics logged yet")
        return
    chosen = st.multiselect("phases", phases, default=phases, key="metric_phases")
    series = [s for s in data.metric_series(session_id) if s.phase in chosen]
    groups = chart_groups(series)
    for phase in chosen:
        st.subheader(phase)
        champion = data.champion(session_id, phase)
        if champion:
            st.caption("champion: " + ", ".join(f"{k} = {v}" for k, v in champion.items()))
        mine = [g for g in groups if g.phase == phase]
        cols = st.columns(2)
        for index, group in enumerate(mine):
            figure = charts.series_figure(group, champion)
            cols[index % 2].plotly_chart(figure, key=f"chart_{phase}_{group.kind}_{group.key}")
        with st.expander(f"{phase}: last value of every metric"):
            _table(final_rows([s for s in series if s.phase == phase]), f"final_{phase}")


# ---- Models and comparison --------------------------------------------------------------------------------

def _model_choice(label: str, ids: list[str], key: str, index: int = 0) -> str:
    return st.selectbox(label, ids, index=min(index, len(ids) - 1), key=key,
                        format_func=lambda mid: mid.split("__", 1)[-1].replace("__", " / "))


def page_models(data: DashboardData, session_id: str) -> None:
    scope = st.radio("models of", ["this session", "all sessions"], horizontal=True, key="model_scope")
    models = data.models(session_id if scope == "this session" else None)
    if not models:
        st.info("no models registered yet")
        return
    _table([{"model": m["model_id"], "phase": m["phase_name"], "name": m["model_name"],
             "parameters": m["parameters"], "size MB": m["size_mb"], "parents": len(m["parents"]),
             "tags": ", ".join(m["tags"]), "created": m["created_at"]} for m in models], "models_table")
    model_id = _model_choice("model", [m["model_id"] for m in models], "model_pick")
    row = data.model(model_id)
    left, right = st.columns(2)
    with left:
        st.markdown("#### Metadata")
        st.json({k: v for k, v in row["metadata"].items() if k != "files"}, expanded=False)
        st.markdown("#### Files (sha256)")
        _table([{"file": k, "sha256": v} for k, v in data.model_files(model_id).items()], "files_table")
    with right:
        st.markdown("#### Lineage")
        lineage = data.lineage(model_id)
        st.graphviz_chart(charts.lineage_dot(lineage.nodes, lineage.edges, model_id))
        st.caption(f"came from: {', '.join(lineage.ancestors()) or 'nothing (a root model)'}")
        st.caption(f"led to: {', '.join(lineage.descendants()) or 'nothing yet'}")


def page_compare(data: DashboardData, session_id: str) -> None:
    scope = st.radio("choose from", ["this session", "all sessions"], horizontal=True, key="compare_scope")
    ids = [m["model_id"] for m in data.models(session_id if scope == "this session" else None)]
    if not ids:
        st.info("no models registered yet")
        return
    left, right = st.columns(2)
    with left:
        model_a = _model_choice("model A", ids, "compare_a")
    with right:
        model_b = _model_choice("model B", ids, "compare_b", index=1)
    rows = data.compare(model_a, model_b)
    _table([{"field": r["field"], "A": _text(r["a"]), "B": _text(r["b"]), "B - A": r["delta"],
             "differs": "" if r["same"] else "yes"} for r in rows], "compare_table")
    for group in data.compare_curves(model_a, model_b):
        st.plotly_chart(charts.series_figure(group), key=f"compare_{group.key}")


def _text(value: Any) -> str:
    return "-" if value is None else value if isinstance(value, str) else json.dumps(value, default=str)


# ---- Generate ---------------------------------------------------------------------------------------------

def page_generate(data: DashboardData, session_id: str, root: str | None) -> None:
    ids = [m["model_id"] for m in data.models(session_id)]
    if not ids:
        st.info("no models registered yet")
        return
    model_id = _model_choice("model", ids, "generate_model", index=len(ids) - 1)
    prompt = st.text_area("prompt", "Question: what is 2 plus 3? Answer:", key="generate_prompt")
    cols = st.columns(3)
    tokens = cols[0].slider("new tokens", 1, 256, 48, key="generate_tokens")
    temperature = cols[1].slider("temperature (0 = greedy)", 0.0, 1.5, 0.0, 0.05, key="generate_temperature")
    seed = int(cols[2].number_input("seed", 0, 2**31 - 1, 0, key="generate_seed"))
    if st.button("Generate", key="generate_button", type="primary"):
        try:
            loaded = cached_model(root, model_id, data.model(model_id).get("metadata_sha256"))
            text = generate_text(loaded, prompt, tokens, temperature, seed)
        except ForgeError as exc:
            st.error(str(exc))
            return
        st.markdown("#### Output")
        st.code(prompt + text, language=None, wrap_lines=True)


# ---- app --------------------------------------------------------------------------------------------------

def _sidebar(data: DashboardData, sessions: list[dict[str, Any]]) -> tuple[str, str, bool, int]:
    with st.sidebar:
        st.title("Agent Forge")
        st.caption(f"workspace: {data.workspace.root if data.workspace else '-'}")
        status = {s["session_id"]: s["status"] for s in sessions}
        session_id = st.selectbox("session", list(status), key="session",
                                  format_func=lambda sid: f"{sid} ({status.get(sid, '?')})")
        page = st.radio("page", PAGES, key="page")
        auto = st.toggle("auto-refresh while running", value=True, key="auto_refresh")
        every = int(st.number_input("refresh every (s)", 2, 120, 5, key="refresh_every"))
    return session_id, page, auto, every


def main() -> None:
    st.set_page_config(page_title="Agent Forge", layout="wide")
    root = workspace_arg()
    try:
        data = open_data(root)
    except ForgeError as exc:
        st.title("Agent Forge")
        st.error(str(exc))
        return
    sessions = data.sessions()
    if not sessions:
        st.title("Agent Forge")
        st.info("no sessions yet: start one with `agent-forge run --preset smoke`")
        return
    session_id, page, auto, every = _sidebar(data, sessions)
    if page == "Generate":
        page_generate(data, session_id, root)
        return
    render = {"Overview": page_overview, "Metrics": page_metrics, "Models": page_models,
              "Compare": page_compare}[page]
    if auto and page in ("Overview", "Metrics") and data.is_live(session_id):
        st.caption(f"live: refreshing every {every} s")
        st.fragment(run_every=every)(_live)(render, data, session_id)
    else:
        render(data, session_id)


def _live(render: Any, data: DashboardData, session_id: str) -> None:
    """One timed refresh; once the run has ended, redraw the whole app once, without the timer."""
    if not data.is_live(session_id):
        st.rerun()
    render(data, session_id)


if __name__ == "__main__":
    main()
