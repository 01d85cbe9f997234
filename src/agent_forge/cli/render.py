"""Rich rendering of CLI output: tables for people, JSON for scripts, one red line for errors."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich import box
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


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], compact: bool = False,
                caption: str | None = None) -> None:
    """A Rich table; ``compact`` drops the box and keeps one space between columns (80-column terminals)."""
    compact_style = {"box": box.SIMPLE_HEAD, "padding": (0, 1), "collapse_padding": True, "pad_edge": False}
    table = Table(title=title, show_lines=False, caption=caption, caption_justify="left",
                  **(compact_style if compact else {}))
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=compact)
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    out.print(table)


def compact_width(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> int:
    """Characters a ``compact`` table needs: its widest cell per column, two spaces between, one at each edge."""
    widths = [max([len(str(c)), *(len(_cell(row[i])) for row in rows)]) for i, c in enumerate(columns)]
    return sum(widths) + 2 * (len(widths) - 1) + 2


def fit(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: the middle replaced by ``...`` when longer. Model ids keep
    their start (the date) and their end (session suffix, phase, name), which tell them apart."""
    if len(text) <= width or width < 8:
        return text
    head = min(9, (width - 3) // 3)
    return f"{text[:head]}...{text[len(text) - (width - 3 - head):]}"


def short_time(stamp: Any) -> str:
    """``2026-12-04 07:16`` from an ISO timestamp (``-`` when missing)."""
    return "-" if not stamp else str(stamp).replace("T", " ")[:16]


def trajectory_rows(phase_runs: list[dict[str, Any]], handoffs: dict[str, str]) -> list[list[Any]]:
    """The D6 trajectory: per phase the held-out figures after it (accuracy overall and per kind) and its
    hand-off status."""
    rows = []
    for run in phase_runs:
        after = run.get("after") or {}
        extra = after.get("extra") or {}
        kinds = [_short(extra.get(f"accuracy_{kind}")) for kind in KIND_COLUMNS]
        think = _short(extra.get("think_accuracy_arith"))  # think mode, measured where a phase thinks
        tools = _short(extra.get("tools_accuracy_arith"))  # tools mode, measured from the baked model on
        rows.append([run["phase_name"], _short(run.get("duration_seconds"), 0), _short(after.get("perplexity"), 2),
                     _short(after.get("accuracy")), *kinds, think, tools, _short(after.get("size_mb"), 2),
                     handoffs.get(run["phase_name"], STATUS_WORDS.get(run["status"], run["status"]))])
    return rows


def _short(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def mc_chance(phase_runs: list[dict[str, Any]]) -> float | None:
    """The chance level of the multiple-choice tasks of the held-out set (one value for the session)."""
    for run in phase_runs:
        chance = ((run.get("after") or {}).get("extra") or {}).get("accuracy_mc_chance")
        if chance is not None:
            return float(chance)
    return None


KIND_COLUMNS = ("arith", "mc", "code")
TRAJECTORY_COLUMNS = ["phase", "s", "ppl", "acc", *KIND_COLUMNS, "think", "tools", "MB", "handoff"]  # 80 columns
TRAJECTORY_KEY = ("s: phase seconds; think/tools: arithmetic in think/tools mode; MB: size (see `agent-forge "
                  "models`); decode latency: `agent-forge show` and the report")
STATUS_WORDS = {"completed": "done"}  # a phase without a hand-off check: its run status, short
