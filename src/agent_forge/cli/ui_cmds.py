"""Commands that show a run: the Streamlit dashboard and the static HTML/Markdown report."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from agent_forge.cli.app import STATE, app
from agent_forge.cli.render import out
from agent_forge.errors import ConfigError
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import ENV_WORKSPACE, Workspace

DASHBOARD_SCRIPT = Path(__file__).resolve().parent.parent / "ui" / "dashboard.py"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def streamlit_command(workspace: Path, host: str, port: int) -> list[str]:
    """The ``streamlit run`` line: headless, no usage statistics, no file watcher, workspace after ``--``."""
    return [sys.executable, "-m", "streamlit", "run", str(DASHBOARD_SCRIPT),
            "--server.address", host, "--server.port", str(port), "--server.headless", "true",
            "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal",
            "--", "--workspace", str(workspace)]


@app.command()
def dashboard(
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8501,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless you mean it).")]
    = "127.0.0.1",
) -> None:
    """Open the local dashboard (Streamlit) on the workspace: live while a pipeline runs."""
    if not 1 <= port <= 65535:
        raise ConfigError(f"--port must be 1-65535, got {port}", "pick a free port, e.g. --port 8502")
    workspace = Workspace.existing(STATE.workspace)
    if not workspace.registry_path.exists():
        out.print(f"[yellow]note:[/yellow] {workspace.root} has no registry yet; the dashboard fills in once "
                  "`agent-forge run` starts")
    if not _is_loopback(host):
        out.print(f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach this machine can "
                  "read the registry and run models from the Generate page (D8)")
    out.print(f"dashboard: http://{host}:{port} (Ctrl-C stops it)")
    sys.stdout.flush()
    env = {**os.environ, ENV_WORKSPACE: str(workspace.root)}
    command = streamlit_command(workspace.root, host, port)
    os.execve(command[0], command, env)  # streamlit owns the process from here: signals reach it directly


@app.command()
def report(
    session_id: Annotated[str, typer.Argument(help="Session to report on.")],
    out_dir: Annotated[Path | None, typer.Option("--out", help="Folder for report.html and report.md "
                                                 "(default: the session's report folder).")] = None,
) -> None:
    """Write a self-contained HTML report (charts inline) and a Markdown summary of a session."""
    from agent_forge.ui.report import write_report

    workspace = Workspace.existing(STATE.workspace)
    registry = ModelRegistry(workspace.registry_path, readonly=True)
    try:
        html_path, md_path = write_report(workspace, registry, session_id, out_dir)
    finally:
        registry.close()
    if not STATE.quiet:
        out.print(f"report: {html_path}\nsummary: {md_path}", soft_wrap=True, highlight=False)
