"""The ``agent-forge`` command: pipeline commands (run, resume, phase) and registry commands."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any

import typer

from agent_forge.cli.render import (
    TRAJECTORY_COLUMNS,
    TRAJECTORY_KEY,
    mc_chance,
    out,
    print_table,
    trajectory_rows,
)
from agent_forge.config import PHASE_NAMES, config_diff, load_config
from agent_forge.config.loader import deep_merge, parse_override, validate_config
from agent_forge.config.schema import PipelineConfig
from agent_forge.errors import ConfigError, NotFoundError, RegistryError, WorkspaceError
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import ENV_WORKSPACE, Workspace, validate_name

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Agent Forge: build a small language model on your own machine, in eight phases.")


class State:
    """Options given before the command (workspace, quiet)."""

    workspace: str | None = None
    quiet: bool = False
    stopped_by: int | None = None  # the signal that interrupted a run


STATE = State()

WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", envvar=ENV_WORKSPACE,
                                                  help="Workspace folder (default ./forge_workspace).")]
PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="tiny (default), smoke or spec25m.")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file merged over the preset.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="Override: section.key=value (repeatable).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
THINKING_TOKENS = 192  # a think- or tools-mode generation's default budget: tiny's 176-token thought and the answer


def generation_budget(given: int | None, thinking: bool, direct: int) -> int:
    """The tokens a command's generation may write: ``given``, else ``THINKING_TOKENS`` in think or tools mode
    (a worked thought runs 60-140 tokens) and ``direct`` otherwise."""
    return given if given is not None else THINKING_TOKENS if thinking else direct


@app.callback()
def main_options(
    workspace: WorkspaceOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or info logs.")] = False,
) -> None:
    STATE.workspace = workspace
    STATE.quiet = quiet


def open_workspace(create: bool = False) -> tuple[Workspace, ModelRegistry]:
    """The workspace and its registry. Only ``create`` (commands that may start a session) makes a missing
    workspace; every other command refuses a folder that is missing or holds no registry in one line (exit 2),
    so a mistyped --workspace creates nothing."""
    workspace = Workspace(STATE.workspace, create=True) if create else Workspace.existing(STATE.workspace)
    has_sessions = workspace.sessions_root.is_dir() and any(workspace.sessions_root.iterdir())
    if not workspace.registry_path.exists() and has_sessions:
        raise RegistryError(f"registry {workspace.registry_path} is missing but the workspace holds sessions",
                            "restore the registry file; Agent Forge never creates a new one silently")
    if not workspace.registry_path.exists() and not create:
        raise WorkspaceError(f"{workspace.root} is not an Agent Forge workspace (it has no registry)",
                             "point --workspace at the folder a run wrote, or start one with `agent-forge run`")
    return workspace, ModelRegistry(workspace.registry_path, create=create)


def _sigterm_as_interrupt() -> None:
    """SIGTERM and SIGINT pause the session like Ctrl-C; the signal is kept for the exit status (128 + n)."""

    def handler(signum: int, _frame: Any) -> None:
        STATE.stopped_by = signum
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _orchestrator(workspace: Workspace, registry: ModelRegistry) -> Any:
    from agent_forge.cli.composition import build_orchestrator  # imports every phase: only when one runs

    return build_orchestrator(workspace, registry, quiet=STATE.quiet)


@app.command()
def run(
    preset: PresetOpt = "tiny",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    start: Annotated[str | None, typer.Option("--from", help="First phase to run.")] = None,
    stop: Annotated[str | None, typer.Option("--to", help="Last phase to run.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Continue past a failed hand-off (recorded).")] = False,
    session: Annotated[str | None, typer.Option("--session", help="Continue inside this session.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Id for the new session (default: generated).")] = None,
) -> None:
    """Run the pipeline (all eight phases, or --from/--to) on a preset."""
    cfg = load_config(preset, config, set_)
    workspace, registry = open_workspace(create=True)
    orch = _orchestrator(workspace, registry)
    orch.phase_window(start, stop)  # argument errors before a session exists (issue 25 F5)
    if name and any(s["session_id"] == name for s in registry.list_sessions()):
        raise ConfigError(f"session '{name}' already exists", f"continue it with `agent-forge resume {name}`")
    session_id = session if session else orch.create_session(cfg, session_id=validate_name(name) if name else None)
    if session:
        registry.get_session(session)
    out.print(f"session [bold]{session_id}[/bold] in {workspace.root}")
    _sigterm_as_interrupt()
    summary = orch.run(session_id, start=start, stop=stop, force=force, config=cfg)
    _print_summary(workspace, registry, summary.session_id)


@app.command()
def resume(
    session_id: Annotated[str, typer.Argument(help="Session to continue.")],
    force: Annotated[bool, typer.Option("--force", help="Continue past a failed hand-off (recorded).")] = False,
    set_: SetOpt = None,
    stop: Annotated[str | None, typer.Option("--to", help="Last phase to run.")] = None,
) -> None:
    """Continue an interrupted or failed session from its last completed phase and checkpoint."""
    workspace, registry = open_workspace()
    orch = _orchestrator(workspace, registry)
    registry.get_session(session_id)
    cfg = _with_overrides(orch.session_config(session_id), set_)
    _sigterm_as_interrupt()
    summary = orch.run(session_id, stop=stop, force=force, config=cfg)
    _print_summary(workspace, registry, summary.session_id)


def _with_overrides(cfg: PipelineConfig, overrides: list[str] | None) -> PipelineConfig:
    """A session's stored config with --set overrides applied (validated), naming what changed."""
    if not overrides:
        return cfg
    stored = cfg.model_dump(mode="json")
    merged = stored
    for item in overrides:
        merged = deep_merge(merged, parse_override(item))
    changed = config_diff(stored, merged)
    if changed:
        out.print(f"[yellow]warning:[/yellow] continuing the session with changed keys: {', '.join(changed)}")
    return validate_config(merged)


@app.command()
def phase(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(PHASE_NAMES)}.")],
    session: Annotated[str | None, typer.Option("--session", help="Session holding the previous phase.")] = None,
    preset: PresetOpt = "tiny",
    config: ConfigOpt = None,
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Re-run the phase even if it completed, and continue "
                                                        "past a failed hand-off (recorded).")] = False,
) -> None:
    """Run a single phase (the first phase may start a new session). Without --force a phase the session
    has completed is not run again and the session is left as it was."""
    if name not in PHASE_NAMES:
        raise NotFoundError(f"unknown phase '{name}'", f"use one of: {', '.join(PHASE_NAMES)}")
    workspace, registry = open_workspace(create=session is None)
    orch = _orchestrator(workspace, registry)
    if session is None and name != PHASE_NAMES[0]:
        raise ConfigError(f"phase '{name}' needs --session with the output of the previous phase",
                          "list sessions with `agent-forge sessions`")
    if session and config:
        raise ConfigError("--config applies to a new session only; a session keeps its stored configuration",
                          "change single keys of the session with --set section.key=value")
    cfg = _with_overrides(orch.session_config(session), set_) if session else load_config(preset, config, set_)
    session_id = session or orch.create_session(cfg)
    _sigterm_as_interrupt()
    orch.run(session_id, start=name, stop=name, force=force, config=cfg, rerun=(name,) if force else ())
    _print_summary(workspace, registry, session_id)


def _print_summary(workspace: Workspace, registry: ModelRegistry, session_id: str) -> None:
    """The D6 trajectory table, then the bundle and report paths (the report is written here)."""
    from agent_forge.tracking.sinks import is_main_process

    if not is_main_process():
        return
    if registry.get_session(session_id)["status"] == "completed":
        from agent_forge.ui.report import write_report

        write_report(workspace, registry, session_id)
    if STATE.quiet:
        return
    runs = registry.phase_runs(session_id)
    handoffs = {h["source_phase"]: h["validation_status"] for h in registry.handoff_history(session_id)}
    chance = mc_chance(runs)
    note = f" (mc chance {chance:.3f})" if chance is not None else ""
    print_table(f"D6 held-out trajectory of {session_id}{note}", TRAJECTORY_COLUMNS,
                trajectory_rows(runs, handoffs), compact=True, caption=TRAJECTORY_KEY)
    bundle = workspace.bundle_dir(session_id)
    report = workspace.report_dir(session_id) / "report.html"
    if bundle.exists():
        out.print(f"bundle: {bundle}", soft_wrap=True, highlight=False)
    if report.exists():
        out.print(f"report: {report}", soft_wrap=True, highlight=False)

