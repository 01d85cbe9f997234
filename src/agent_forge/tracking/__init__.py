"""Tracking: metric sinks (SQLite, W&B offline), structured logs, system figures, progress bars."""

from agent_forge.tracking.progress import ProgressReporter, ProgressTask
from agent_forge.tracking.sinks import MetricsTracker, SQLiteSink, WandbSink, is_main_process

__all__ = ["MetricsTracker", "ProgressReporter", "ProgressTask", "SQLiteSink", "WandbSink", "is_main_process"]
