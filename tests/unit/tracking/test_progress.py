"""Progress a person can follow: plain lines without a terminal, logs above the bars on one, the status file."""

from __future__ import annotations

import io
import json
import sys

from rich.console import Console
from rich.file_proxy import FileProxy

from agent_forge.tracking.logging import configure_logging, get_logger
from agent_forge.tracking.progress import PlainPace, ProgressReporter, clock, read_heartbeat


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=terminal, width=100, color_system=None), buffer


def test_without_a_terminal_one_plain_line_per_tenth(tmp_path) -> None:
    console, buffer = _console(terminal=False)
    reporter = ProgressReporter(console=console, pace=PlainPace(step=0.1, every_s=3600, min_gap_s=0))
    assert reporter.plain
    with reporter, reporter.task("cognate:trunk", total=40) as bar:
        for _ in range(40):
            bar.note("loss 2.31")
            bar.advance()
    lines = buffer.getvalue().splitlines()
    assert lines[0].startswith("[progress] cognate:trunk 0/40 (0%) elapsed 0s eta ?")
    assert [line.split()[2] for line in lines[1:]] == [f"{4 * i}/40" for i in range(1, 11)]
    assert all(" eta " in line and line.endswith("loss 2.31") for line in lines[1:-1])
    assert lines[-1].startswith("[progress] cognate:trunk 40/40 (100%)") and " done " in lines[-1]


def test_plain_lines_wait_for_the_minimum_gap() -> None:
    console, buffer = _console(terminal=False)
    reporter = ProgressReporter(console=console, pace=PlainPace(step=0.1, every_s=3600, min_gap_s=3600))
    with reporter, reporter.task("evomerge:generations", total=25) as bar:
        for _ in range(25):
            bar.advance()
    lines = buffer.getvalue().splitlines()
    assert len(lines) == 2 and lines[-1].startswith("[progress] evomerge:generations 25/25")  # opened, done


def test_quiet_prints_nothing_but_counts() -> None:
    console, buffer = _console(terminal=False)
    with ProgressReporter(quiet=True, console=console) as reporter, reporter.task("x", total=3) as bar:
        bar.advance(3)
        assert bar.completed == 3 and bar.fraction() == 1.0
    assert buffer.getvalue() == ""


def test_on_a_terminal_logs_go_above_the_bars(capsys, tmp_path) -> None:
    """While bars show, stderr is Rich's proxy, which prints each log line above the live display."""
    console, buffer = _console(terminal=True)
    configure_logging(tmp_path / "session.jsonl")
    try:
        with ProgressReporter(console=console) as reporter, reporter.task("bitnet:qat", total=10) as bar:
            assert isinstance(sys.stderr, FileProxy)
            get_logger("test").info("calibrated", layers=45)
            get_logger("test").info("generation", generation=3, console=False)  # the JSONL file only
            bar.advance(5)
    finally:
        configure_logging(None)
    shown = buffer.getvalue()
    assert "calibrated" in shown and "layers" in shown and "bitnet:qat" in shown
    assert "generation" not in shown and "calibrated" not in capsys.readouterr().err
    events = [json.loads(line) for line in (tmp_path / "session.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["calibrated", "generation"] and "console" not in events[1]


def test_status_file_holds_the_open_bars(tmp_path) -> None:
    path = tmp_path / "logs" / "progress.json"
    beats = []
    console, _ = _console(terminal=False)
    reporter = ProgressReporter(quiet=True, console=console, heartbeat=path, beat_s=0.0,
                                on_beat=lambda tasks: beats.append([t.description for t in tasks]))
    with reporter, reporter.task("phases", total=8, completed=2), reporter.task("quietstar:train", 100) as bar:
        bar.advance(30)
        state = read_heartbeat(path)
        assert [t["description"] for t in state["tasks"]] == ["phases", "quietstar:train"]
        inner = state["tasks"][1]
        assert inner["completed"] == 30 and inner["total"] == 100 and inner["eta_s"] >= 0
    assert read_heartbeat(path)["tasks"] == [] and beats[-1] == []
    assert ["phases", "quietstar:train"] in beats
    path.write_text("{not json")
    assert read_heartbeat(path) is None


def test_clock() -> None:
    assert [clock(s) for s in (None, 0.4, 42, 185, 3720)] == ["?", "0s", "42s", "3m05s", "1h02m"]
