"""The D6 table: accuracy per kind with the multiple-choice chance level, fitting 80 columns."""

from __future__ import annotations

import io

from rich.console import Console

from agent_forge.cli import render
from agent_forge.ui.data import accuracy_cells, with_interval

RUNS = [
    {"phase_name": "cognate", "status": "completed", "duration_seconds": 401.7,
     "after": {"perplexity": 2.7213, "accuracy": 0.3721, "size_mb": 4.876, "latency_ms": 6.61,
               "extra": {"accuracy_arith": 0.052, "accuracy_mc": 0.344, "accuracy_code": 0.72,
                         "accuracy_mc_chance": 0.3173}}},
    {"phase_name": "quietstar", "status": "running", "duration_seconds": None, "after": None},
]


def test_trajectory_rows_give_every_kind_and_the_handoff():
    rows = render.trajectory_rows(RUNS, {"cognate": "passed"})
    assert rows[0] == ["cognate", "402", "2.72", "0.372", "0.052", "0.344", "0.720", "-", "-", "4.88", "passed"]
    assert rows[1][1:10] == ["-"] * 9 and render.trajectory_rows(RUNS, {})[0][-1] == "done" and rows[1][-1] == "running"
    assert render.mc_chance(RUNS) == 0.3173 and render.mc_chance(RUNS[1:]) is None
    thinking = [{**RUNS[0], "after": {**RUNS[0]["after"], "extra": {"think_accuracy_arith": 0.214}}}]
    assert render.trajectory_rows(thinking, {})[0][7] == "0.214"  # the think column: think-mode arithmetic
    tooling = [{**RUNS[0], "after": {**RUNS[0]["after"], "extra": {"tools_accuracy_arith": 0.61}}}]
    assert render.trajectory_rows(tooling, {})[0][8] == "0.610"  # the tools column: tools-mode arithmetic


def test_the_compact_table_fits_80_columns(monkeypatch):
    buffer = io.StringIO()
    monkeypatch.setattr(render, "out", Console(file=buffer, width=80))
    render.print_table("D6", render.TRAJECTORY_COLUMNS, render.trajectory_rows(RUNS, {}), compact=True)
    lines = buffer.getvalue().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("cognate" in line and "0.344" in line for line in lines)  # one row, nothing folded
    assert any(line.split() == render.TRAJECTORY_COLUMNS for line in lines)  # every heading whole
    wide = render.compact_width(render.TRAJECTORY_COLUMNS, render.trajectory_rows(RUNS, {"cognate": "passed"}))
    assert wide <= 80


def test_accuracy_cells_show_intervals_and_name_the_chance():
    row = {"accuracy": 0.4, "accuracy_interval": {"low": 0.375, "high": 0.425},
           "kinds": {"mc": {"value": 0.41, "low": 0.37, "high": 0.45, "n": 500, "chance": 0.317},
                     "code": {"value": 0.8, "low": None, "high": None, "n": None, "chance": 0.0}}}
    cells = accuracy_cells(row)
    assert cells["accuracy (95% CI)"] == "0.400 (0.375-0.425)"
    assert cells["mc (chance 0.317)"] == "0.410 (0.370-0.450)"
    assert cells["code"] == "0.800" and cells["arith"] == "-" and cells["arith, think mode"] == "-"
    assert cells["arith, tools mode"] == "-"
    thinking = {**row, "think": {"value": 0.2, "low": 0.16, "high": 0.24}}
    assert accuracy_cells(thinking)["arith, think mode"] == "0.200 (0.160-0.240)"
    assert with_interval(None, {}) == "-"
