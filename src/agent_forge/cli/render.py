"""Rich rendering of CLI output: tables for people, JSON for scripts, one red line for errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)


def print_error(message: str) -> None:
    err.print(f"[bold red]error:[/bold red] {escape(message)}", highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    out.print(table)


def trajectory_rows(phase_runs: list[dict[str, Any]], handoffs: dict[str, str]) -> list[list[Any]]:
    """The D6 trajectory: per phase the held-out figures after it and its hand-off status."""
    rows = []
    for run in phase_runs:
        after = run.get("after") or {}
        rows.append([run["phase_name"], run["status"], run.get("duration_seconds"), after.get("perplexity"),
                     after.get("accuracy"), after.get("size_mb"), after.get("latency_ms"),
                     handoffs.get(run["phase_name"], "-")])
    return rows


TRAJECTORY_COLUMNS = ["phase", "status", "s", "ppl", "acc", "MB", "ms/tok", "hand-off"]
