"""System figures (CPU, resident memory, accelerator memory) recorded as metrics."""

from __future__ import annotations

import os

import psutil
import torch

_PROCESS = psutil.Process(os.getpid())


def system_metrics() -> dict[str, float]:
    """A snapshot: process CPU share and RSS, machine memory use, and CUDA memory when present."""
    figures = {
        "system/cpu_percent": _PROCESS.cpu_percent(interval=None),
        "system/rss_mb": _PROCESS.memory_info().rss / 1e6,
        "system/ram_used_percent": psutil.virtual_memory().percent,
        "system/torch_threads": float(torch.get_num_threads()),
    }
    if torch.cuda.is_available():
        figures["system/cuda_allocated_mb"] = torch.cuda.memory_allocated() / 1e6
        figures["system/cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 1e6
    return figures


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux reports kilobytes)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
