"""Structured logging with structlog: a console renderer and a JSONL file per session.

Console lines go to whatever ``sys.stderr`` is at the moment of writing (``_CurrentStderr``), not the stream
it was at configuration: while Rich shows progress bars it swaps in a proxy that prints above them, so a
log line never runs through a bar. An event logged with ``console=False`` (per-step chatter such as one line
per Phase 2 generation) reaches the JSONL file only; progress shows the same on the console.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import structlog


class _JsonlFile:
    """Appends one JSON object per event to the session's log file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the logger

    def write(self, event: dict[str, Any]) -> None:
        self.handle.write(json.dumps(event, default=str, sort_keys=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


_files: list[_JsonlFile] = []


class _CurrentStderr:
    """A file that writes to the ``sys.stderr`` of the moment (Rich's proxy while bars are shown)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def _tee_processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    for sink in _files:
        sink.write({k: v for k, v in event.items() if k != "console"})
    return event


_CONSOLE_RANK = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def _console_filter(min_level: int) -> Any:
    """Drop events below the console level after they reached the JSONL file."""

    def processor(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
        if event.pop("console", True) is False or _CONSOLE_RANK.get(event.get("level", "info"), 20) < min_level:
            raise structlog.DropEvent
        return event

    return processor


def configure_logging(log_file: Path | None = None, quiet: bool = False, verbose: bool = False) -> None:
    """Console output at INFO (WARNING when quiet, DEBUG when verbose); every INFO+ event to ``log_file``."""
    for sink in _files:
        sink.close()
    _files.clear()
    if log_file is not None:
        _files.append(_JsonlFile(log_file))
    console_level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    level = min(console_level, logging.INFO)
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _tee_processor,
            _console_filter(console_level),
            structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
