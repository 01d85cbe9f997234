"""Progress with an ETA for every long loop (phases, steps, generations): bars on a terminal, plain lines
elsewhere, and a small JSON file that ``agent-forge status`` reads.

Phases receive a ``ProgressReporter`` and never import Rich themselves. Three renderings:

- a terminal: Rich bars. While they are shown, Rich routes ``sys.stderr`` (where the logs go, see
  ``tracking.logging``) above the bars, so log lines never run through them;
- no terminal (a log file, CI, ``nohup``): one plain line per bar every ``PLAIN_STEP`` of its total or
  every ``PLAIN_EVERY_S`` seconds, whichever comes first (never more often than ``PLAIN_MIN_GAP_S``), and
  one when it ends: ``[progress] evomerge:generations 12/25 (48%) elapsed 1m02s eta 1m08s``;
- ``quiet``: nothing rendered; the counting (and the status file) goes on.

The status file (``heartbeat``) holds every open bar with its count, start time and rate-based ETA; it is
rewritten atomically at most every ``HEARTBEAT_EVERY_S`` seconds and when a bar opens or closes.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_STEP = 0.10  # a plain line at every tenth of a bar ...
PLAIN_EVERY_S = 30.0  # ... or after this long without one
PLAIN_MIN_GAP_S = 2.0  # and never two lines of one bar closer than this (except its last)
HEARTBEAT_EVERY_S = 2.0


def clock(seconds: float | None) -> str:
    """``1h02m``, ``3m05s``, ``42s``; ``?`` when unknown."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    seconds = round(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


@dataclass
class ProgressTask:
    """A handle on one bar; ``advance`` moves it, ``note`` updates its trailing text."""

    progress: Progress | None
    task_id: TaskID | None
    total: int
    completed: int = 0
    description: str = ""
    info: str = ""
    started: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    first: int = 0  # the count when the bar opened (a resumed loop starts part-way)
    on_change: Callable[[ProgressTask], None] | None = None

    def __post_init__(self) -> None:
        self.first = self.completed

    def advance(self, amount: int = 1) -> None:
        self.completed += amount
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, advance=amount)
        if self.on_change is not None:
            self.on_change(self)

    def note(self, text: str) -> None:
        """The bar's trailing text; plain lines and the status file show it from the next ``advance``."""
        self.info = text
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, info=text)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def eta_seconds(self) -> float | None:
        """Time left at the rate since the bar opened (None before the first step)."""
        done = self.completed - self.first
        if done <= 0 or self.total <= 0:
            return None
        return max(self.total - self.completed, 0) * self.elapsed() / done

    def fraction(self) -> float:
        return min(self.completed / self.total, 1.0) if self.total > 0 else 0.0

    def line(self) -> str:
        """The plain progress line: description, count, share, elapsed and ETA, and the note."""
        text = (f"[progress] {self.description} {self.completed}/{self.total} ({100 * self.fraction():.0f}%) "
                f"elapsed {clock(self.elapsed())}")
        text += " done" if self.completed >= self.total else f" eta {clock(self.eta_seconds())}"
        return text + (f" {self.info}" if self.info else "")

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "completed": self.completed, "total": self.total,
                "started_at": self.started_at, "elapsed_s": self.elapsed(), "eta_s": self.eta_seconds(),
                "info": self.info}


@dataclass(frozen=True)
class PlainPace:
    """How often a bar prints a plain line: at each multiple of ``step`` of its total it passes or after
    ``every_s`` seconds, whichever comes first, never two closer than ``min_gap_s`` (its last line always)."""

    step: float = PLAIN_STEP
    every_s: float = PLAIN_EVERY_S
    min_gap_s: float = PLAIN_MIN_GAP_S


@dataclass
class _PlainClock:
    """When the next plain line of one bar is due."""

    pace: PlainPace
    last_fraction: float = 0.0
    last_time: float = field(default_factory=time.monotonic)
    ended: bool = False  # the bar's last line is out

    def due(self, task: ProgressTask) -> bool:
        now, fraction = time.monotonic(), task.fraction()
        if task.completed >= task.total:
            return not self.ended
        if now - self.last_time < self.pace.min_gap_s:
            return False
        crossed = int(fraction / self.pace.step + 1e-9) > int(self.last_fraction / self.pace.step + 1e-9)
        return crossed or now - self.last_time >= self.pace.every_s

    def mark(self, task: ProgressTask) -> None:
        self.last_time, self.last_fraction = time.monotonic(), task.fraction()
        self.ended = task.completed >= task.total


class ProgressReporter:
    """Creates bars on one shared Rich ``Progress``, plain lines without a terminal, or silently counts."""

    def __init__(self, quiet: bool = False, console: Console | None = None, plain: bool | None = None,
                 heartbeat: Path | None = None, on_beat: Callable[[list[ProgressTask]], None] | None = None,
                 pace: PlainPace | None = None, beat_s: float = HEARTBEAT_EVERY_S) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.heartbeat = heartbeat
        self.on_beat = on_beat  # called with the open bars at every beat (the orchestrator's session percent)
        self.pace, self.beat_s = pace or PlainPace(), beat_s
        self._progress: Progress | None = None
        self._open: list[ProgressTask] = []
        self._paces: dict[int, _PlainClock] = {}
        self._last_beat = 0.0

    def __enter__(self) -> ProgressReporter:
        if not self.quiet and not self.plain:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=self.console, transient=False, redirect_stderr=True, redirect_stdout=True,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._open.clear()
        self._beat(force=True)

    @contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[ProgressTask]:
        """A bar that lives for the ``with`` block (removed afterwards unless it is a phase-level bar)."""
        task_id = None
        if self._progress is not None:
            task_id = self._progress.add_task(description, total=total, completed=completed, info="")
        handle = ProgressTask(self._progress, task_id, total, completed, description, on_change=self._changed)
        self._open.append(handle)
        self._paces[id(handle)] = _PlainClock(self.pace, handle.fraction())
        if self.plain and not self.quiet:  # say what starts now, so a log never sits silent for a phase
            self.console.print(handle.line(), markup=False, highlight=False, soft_wrap=True)
        self._beat(force=True)
        try:
            yield handle
        finally:
            self._open.remove(handle)
            self._paces.pop(id(handle), None)
            self._beat(force=True)
            if self._progress is not None and task_id is not None:
                self._progress.remove_task(task_id)

    def _changed(self, task: ProgressTask) -> None:
        pace = self._paces.get(id(task))
        if self.plain and not self.quiet and pace is not None and pace.due(task):
            pace.mark(task)
            self.console.print(task.line(), markup=False, highlight=False, soft_wrap=True)
        self._beat()

    def open_tasks(self) -> list[ProgressTask]:
        return list(self._open)

    def _beat(self, force: bool = False) -> None:
        """Rewrite the status file (atomically: a reader never sees half of it)."""
        now = time.monotonic()
        idle = self.heartbeat is None and self.on_beat is None
        if idle or (not force and now - self._last_beat < self.beat_s):
            return
        self._last_beat = now
        if self.on_beat is not None:
            self.on_beat(list(self._open))
        if self.heartbeat is None:
            return
        state = {"updated_at": time.time(), "pid": os.getpid(), "tasks": [t.to_dict() for t in self._open]}
        try:
            self.heartbeat.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.heartbeat.with_name(f".{self.heartbeat.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(state), encoding="utf-8")
            os.replace(tmp, self.heartbeat)
        except OSError:  # the status file is a courtesy: a full or read-only disk must not stop a run
            pass


def read_heartbeat(path: Path) -> dict[str, Any] | None:
    """The status file as written by a running pipeline, or None when absent or unreadable."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("tasks"), list) else None
