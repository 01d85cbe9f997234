"""Metric sinks: the SQLite registry always, Weights & Biases (offline or online) optionally.

Phases call ``tracker.log(phase, model, step, {...})`` with the spec's metric names; every sink receives the
same values. Under torchrun only rank 0 writes (the tracker checks the rank itself).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Protocol

from agent_forge.storage.registry import ModelRegistry


def is_main_process() -> bool:
    """True unless this is a non-zero rank of a torch.distributed job."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank() == 0
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return True
    return int(os.environ.get("RANK", "0")) == 0


def numeric_items(metrics: dict[str, Any]) -> dict[str, float]:
    """Keep the values a time series can hold (bools become 0/1; NaN and text are dropped)."""
    out: dict[str, float] = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or (isinstance(value, (int, float)) and math.isfinite(float(value))):
            out[name] = float(value)
    return out


class MetricSink(Protocol):
    def log(self, phase: str, model: str, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class SQLiteSink:
    """Writes metrics rows into the registry's ``metrics`` table."""

    def __init__(self, registry: ModelRegistry, session_id: str) -> None:
        self.registry = registry
        self.session_id = session_id

    def log(self, phase: str, model: str, step: int, metrics: dict[str, float]) -> None:
        self.registry.log_metrics(
            (self.session_id, phase, model, int(step), name, value) for name, value in metrics.items()
        )

    def close(self) -> None:
        return None


class WandbSink:
    """One W&B run per session; metric keys are prefixed by phase (and model) as in the spec."""

    def __init__(self, session_id: str, directory: Path, mode: str, project: str, config: dict[str, Any]) -> None:
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        directory.mkdir(parents=True, exist_ok=True)
        # W&B drops steps below the run's last one; a resumed session continues the count, so its offline
        # runs sync into one run with every value kept.
        self._step_file = directory / "last_step"
        self._step = int(self._step_file.read_text()) if self._step_file.is_file() else 0
        self.run = wandb.init(project=project, name=session_id, id=session_id, dir=str(directory), mode=mode,
                              config=config, resume="allow", reinit="create_new")

    def log(self, phase: str, model: str, step: int, metrics: dict[str, float]) -> None:
        prefix = f"{phase}/" if not model or model == "phase" else f"{phase}/{model}/"
        self._step += 1
        self.run.log({f"{prefix}{k}": v for k, v in metrics.items()} | {f"{phase}/step": step}, step=self._step)
        self._step_file.write_text(str(self._step))

    def close(self) -> None:
        self.run.finish()


class MetricsTracker:
    """Fans metric dictionaries out to every sink (rank 0 only)."""

    def __init__(self, sinks: list[MetricSink]) -> None:
        self.sinks = sinks if is_main_process() else []

    def log(self, phase: str, model: str, step: int, metrics: dict[str, Any]) -> None:
        values = numeric_items(metrics)
        if not values:
            return
        for sink in self.sinks:
            sink.log(phase, model or "phase", step, values)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
