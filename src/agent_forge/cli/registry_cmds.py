"""Read and maintenance commands on the registry: status, sessions, models, show, clean, vacuum."""

from __future__ import annotations

from typing import Annotated

import typer

from agent_forge.cli.app import STATE, JsonOpt, app, open_workspace
from agent_forge.cli.render import out, print_json, print_table
from agent_forge.config.schema import CleanupSection
from agent_forge.errors import ConfigError
from agent_forge.storage.cleanup import SessionCleanupManager


@app.command()
def status(
    session_id: Annotated[str | None, typer.Argument(help="Session (default: the newest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Status and progress of a session, phase by phase."""
    _, registry = open_workspace()
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
    rows = [[r["phase_name"], r["status"], r["duration_seconds"], len(r.get("output_models") or []), r["error"]]
            for r in runs]
    print_table("phases", ["phase", "status", "seconds", "models", "error"], rows)


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
    print_table("sessions", ["session", "preset", "status", "progress %", "phase", "started", "ended"],
                [[r["session_id"], r["preset"], r["status"], r["progress_percent"], r["current_phase"],
                  r["start_time"], r["end_time"]] for r in rows])


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
    print_table("models", ["model id", "phase", "name", "parameters", "size MB", "tags", "created"],
                [[r["model_id"], r["phase_name"], r["model_name"], r["parameters"], r["size_mb"], r["tags"],
                  r["created_at"]] for r in rows])


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
    print_table(model_id, ["field", "value"],
                [["phase", row["phase_name"]], ["path", row["model_path"]], ["parameters", row["parameters"]],
                 ["size MB", row["size_mb"]], ["parents", row["parents"]], ["tags", row["tags"]]]
                + [[k, v] for k, v in sorted(meta.items()) if k not in ("files", "param_breakdown")])


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
