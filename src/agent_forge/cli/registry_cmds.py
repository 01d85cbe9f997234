"""Read and maintenance commands on the registry: status, sessions, models, show, clean, vacuum."""

from __future__ import annotations

import statistics
import time
from typing import Annotated, Any

import typer

from agent_forge.cli.app import STATE, JsonOpt, app, open_workspace
from agent_forge.cli.render import compact_width, fit, out, print_json, print_table, short_time
from agent_forge.config.schema import PHASE_NAMES, CleanupSection
from agent_forge.errors import ConfigError
from agent_forge.storage.artifacts import SIZE_DEFINITION
from agent_forge.storage.cleanup import SessionCleanupManager
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from agent_forge.tracking.progress import clock, read_heartbeat
from agent_forge.ui.data import parse_time

STALE_S = 300.0  # a running session whose progress file is older than this may have died
STALE_AFTER_S = 10.0  # older than this, the current bar's line says how long ago its last step was


def _phase_history(registry: ModelRegistry, preset: str, skip: str) -> dict[str, float]:
    """Median seconds of each phase over this workspace's other sessions of the same preset."""
    seconds: dict[str, list[float]] = {}
    for session in registry.list_sessions():
        if session["preset"] != preset or session["session_id"] == skip:
            continue
        for run in registry.phase_runs(session["session_id"]):
            if run["status"] == "completed" and run.get("duration_seconds"):
                seconds.setdefault(run["phase_name"], []).append(float(run["duration_seconds"]))
    return {phase: statistics.median(values) for phase, values in seconds.items()}


def _current_bar(tasks: list[dict[str, Any]], age: float) -> tuple[str | None, float | None]:
    """The innermost open bar as a line, and its time left now (its ETA less the file's age)."""
    inner = [t for t in tasks if t.get("description") != "phases"]
    if not inner:
        return None, None
    bar = inner[-1]
    total, done = int(bar.get("total") or 0), int(bar.get("completed") or 0)
    left = None if bar.get("eta_s") is None else max(float(bar["eta_s"]) - age, 0.0)
    share = f" ({100 * done / total:.0f}%)" if total else ""
    eta = "any moment" if left == 0.0 else clock(left)
    elapsed = clock(float(bar.get("elapsed_s") or 0.0) + age)
    line = f"now: {bar['description']} {done}/{total}{share}, elapsed {elapsed}, eta {eta}"
    if bar.get("info"):
        line += f" ({bar['info']})"
    if age > STALE_AFTER_S:  # between two steps of a bar (or between bars) nothing is reported
        line += f"; last step {clock(age)} ago"
    return line, left


def _later_phases(tasks: list[dict[str, Any]], current: str | None) -> list[str]:
    """The phases of the run's window still to come after the current one."""
    outer = next((t for t in tasks if t.get("description") == "phases"), None)
    if outer is None or current not in PHASE_NAMES:
        return []
    left = max(int(outer["total"]) - int(outer["completed"]) - 1, 0)
    start = PHASE_NAMES.index(current) + 1
    return list(PHASE_NAMES[start : start + left])


def eta_lines(workspace: Workspace, registry: ModelRegistry, session: dict[str, Any],
              runs: list[dict[str, Any]]) -> list[str]:
    """What a running session does now and how long it has left: the current bar's rate-based ETA, plus the
    phases after it at the median time this workspace's earlier sessions of the preset took for them."""
    if session["status"] != "running":
        return []
    beat = read_heartbeat(workspace.progress_path(session["session_id"]))
    if beat is None:
        return ["eta: unknown (no progress file yet)"]
    age = max(time.time() - float(beat.get("updated_at") or 0.0), 0.0)
    current = session.get("current_phase")
    line, bar_left = _current_bar(beat["tasks"], age)
    lines = [line or f"now: {current or 'between phases'}, preparing (no step count yet)"]
    history = _phase_history(registry, session["preset"], session["session_id"])
    started = next((parse_time(r["started_at"]) for r in runs if r["phase_name"] == current and r.get("started_at")),
                   None)
    phase_left = bar_left
    if current in history and started is not None:  # a phase with several bars: its usual length counts too
        typical_left = history[current] - (time.time() - started.timestamp())
        phase_left = max(typical_left, bar_left or 0.0)
    later = _later_phases(beat["tasks"], current)
    timed = [history[p] for p in later if p in history]
    untimed = len(later) - len(timed)
    if phase_left is not None:
        total = phase_left + sum(timed)
        parts = [f"{current} {clock(phase_left)}"]
        if timed:
            parts.append(f"{len(timed)} later phase(s) {clock(sum(timed))} as earlier {session['preset']} runs took")
        if untimed:
            parts.append(f"{untimed} later phase(s) not yet timed on this workspace")
        if untimed and total < 1.0:
            lines.append(f"time left: unknown ({untimed} later phase(s) not yet timed on this workspace)")
        else:
            lines.append(f"time left: {'at least ' if untimed else 'about '}{clock(total)} ({'; '.join(parts)})")
    if age > STALE_S:
        lines.append(f"warning: no progress for {clock(age)}; is the run still alive? (`agent-forge resume` "
                     "continues a dead one)")
    return lines


@app.command()
def status(
    session_id: Annotated[str | None, typer.Argument(help="Session (default: the newest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Status and progress of a session, phase by phase, with what runs now and the time left."""
    workspace, registry = open_workspace()
    sessions = registry.list_sessions()
    if session_id is None and not sessions:
        print_json({"sessions": []}) if as_json else out.print("no sessions yet: start one with `agent-forge run`")
        return
    session = registry.get_session(session_id or sessions[0]["session_id"])
    runs = registry.phase_runs(session["session_id"])
    if as_json:
        session.pop("pipeline_config_json", None)
        print_json({"session": session, "phases": runs})
        return
    out.print(f"session [bold]{session['session_id']}[/bold]: {session['status']}, "
              f"{session['progress_percent'] or 0:.0f}% (current phase: {session['current_phase'] or '-'})")
    for line in eta_lines(workspace, registry, session, runs):
        out.print(line, markup=False, highlight=False)
    rows = [[r["phase_name"], r["status"], clock(r["duration_seconds"]) if r["duration_seconds"] else "-",
             len(r.get("output_models") or []), r["error"]] for r in runs]
    print_table("phases", ["phase", "status", "time", "models", "error"], rows)


@app.command()
def sessions(as_json: JsonOpt = False) -> None:
    """All sessions, newest first."""
    _, registry = open_workspace()
    rows = registry.list_sessions()
    for row in rows:
        row.pop("pipeline_config_json", None)
    if as_json:
        print_json(rows)
        return
    head = ["session", "preset", "status", "%", "phase", "started", "ended"]
    table = [[r["session_id"], r["preset"], r["status"], f"{r['progress_percent'] or 0:.0f}", r["current_phase"],
              short_time(r["start_time"]), short_time(r["end_time"])] for r in rows]
    if compact_width(head, table) > out.width:  # 80 columns: the end time goes first
        head, table = head[:-1], [row[:-1] for row in table]
    print_table("sessions", head, table, compact=True)


@app.command()
def models(
    phase: Annotated[str | None, typer.Option("--phase", help="Only this phase.")] = None,
    session: Annotated[str | None, typer.Option("--session", help="Only this session.")] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="Only models with this tag.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Registered models, searchable by phase, session and tag."""
    _, registry = open_workspace()
    rows = registry.search_models(phase=phase, session=session, tag=tag)
    if as_json:
        print_json(rows)
        return
    print_table("models", *_model_table(rows, out.width), compact=True, caption=SIZE_DEFINITION + ".")


def _model_table(rows: list[dict[str, Any]], width: int) -> tuple[list[str], list[list[Any]]]:
    """Every column when they fit ``width``; else the id (its middle elided if need be), size and parameters:
    the id already holds the session, phase and name."""
    head = ["model id", "phase", "name", "parameters", "size MB", "tags", "created"]
    wide = [[r["model_id"], r["phase_name"], r["model_name"], r["parameters"], f"{r['size_mb']:.3f}", r["tags"],
             short_time(r["created_at"])] for r in rows]
    if compact_width(head, wide) <= width:
        return head, wide
    cells = [[f"{r['size_mb']:.3f}", str(r["parameters"])] for r in rows]
    room = width - compact_width(["size MB", "params"], cells) - 2  # the id column's gap
    return ["model id", "size MB", "params"], [[fit(r["model_id"], room), *c] for r, c in zip(rows, cells, strict=True)]


@app.command()
def show(model_id: Annotated[str, typer.Argument(help="Model id (see `agent-forge models`).")],
         as_json: JsonOpt = False) -> None:
    """One model's metadata, lineage and files."""
    _, registry = open_workspace()
    row = registry.get_model(model_id)
    if as_json:
        print_json(row)
        return
    meta = row["metadata"]
    shown_above = ("files", "param_breakdown", "size_mb", "size_file")  # size: one figure, in its own rows
    print_table(model_id, ["field", "value"],
                [["phase", row["phase_name"]], ["path", row["model_path"]], ["parameters", row["parameters"]],
                 ["size MB", f"{row['size_mb']:.4g}"], ["size counts", row["size_counts"]],
                 ["parents", row["parents"]], ["tags", row["tags"]]]
                + [[k, v] for k, v in sorted(meta.items()) if k not in shown_above])


@app.command()
def clean(
    age: Annotated[float | None, typer.Option("--age", help="Remove sessions older than N days.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Remove failed sessions.")] = False,
    everything: Annotated[bool, typer.Option("--all", help="Remove every session that is not running.")] = False,
    policy: Annotated[bool, typer.Option("--policy", help="Apply the configured retention policy.")] = False,
) -> None:
    """Remove sessions (files and registry rows) and reclaim space."""
    if age is None and not (failed or everything or policy):
        raise ConfigError("clean needs --age N, --failed, --all or --policy", "say which sessions to remove")
    if age is not None and age < 0:
        raise ConfigError(f"--age must be at least 0, got {age}", "pass a number of days")
    workspace, registry = open_workspace()
    manager = SessionCleanupManager(workspace, registry, CleanupSection())
    chosen = manager.select_by_policy() if policy else manager.select(age, failed, everything)
    report = manager.clean(chosen)
    if not STATE.quiet:
        out.print(f"removed {len(report.removed)} session(s), {report.kept} left")


@app.command()
def vacuum() -> None:
    """Checkpoint the WAL into the database and reclaim free pages."""
    workspace, registry = open_workspace()
    sizes = SessionCleanupManager(workspace, registry, CleanupSection()).checkpoint_and_vacuum(pages=10_000)
    if not STATE.quiet:
        out.print(f"registry: {sizes['db_bytes'] / 1e6:.2f} MB, WAL: {sizes['wal_bytes'] / 1e6:.2f} MB")
