"""Progress bars with ETA for every long loop (phases, steps, generations), via Rich.

Phases receive a ``ProgressReporter`` and never import Rich themselves. ``quiet`` keeps the counting (so the
dashboard can show progress from the registry) but renders nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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


@dataclass
class ProgressTask:
    """A handle on one bar; ``advance`` moves it, ``note`` updates its trailing text."""

    progress: Progress | None
    task_id: TaskID | None
    total: int
    completed: int = 0

    def advance(self, amount: int = 1) -> None:
        self.completed += amount
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, advance=amount)

    def note(self, text: str) -> None:
        if self.progress is not None and self.task_id is not None:
            self.progress.update(self.task_id, info=text)


class ProgressReporter:
    """Creates bars on one shared Rich ``Progress`` (or silently counts when quiet)."""

    def __init__(self, quiet: bool = False, console: Console | None = None) -> None:
        self.quiet = quiet
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None

    def __enter__(self) -> ProgressReporter:
        if not self.quiet:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"),
                console=self.console, transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    @contextmanager
    def task(self, description: str, total: int, completed: int = 0) -> Iterator[ProgressTask]:
        """A bar that lives for the ``with`` block (removed afterwards unless it is a phase-level bar)."""
        task_id = None
        if self._progress is not None:
            task_id = self._progress.add_task(description, total=total, completed=completed, info="")
        handle = ProgressTask(self._progress, task_id, total, completed)
        try:
            yield handle
        finally:
            if self._progress is not None and task_id is not None:
                self._progress.remove_task(task_id)
