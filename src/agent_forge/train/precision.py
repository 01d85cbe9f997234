"""Device and mixed-precision choice.

bf16 autocast is 1.3-2x faster than fp32 for our small models on CPUs with AVX-512 BF16 or AMX (measured in
``benchmarks/phase1.py``); on other CPUs it is slower, so ``auto`` only enables it where the CPU has the
instructions, and always on CUDA devices that support bf16.
"""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path

import torch

BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return False
    return any(flag in text.split() for flag in BF16_CPU_FLAGS)


def resolve_device(choice: str = "auto") -> torch.device:
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device() if torch.cuda.is_available() else 0)
    return torch.device("cpu")


def use_bf16(choice: str, device: torch.device) -> bool:
    """Decide bf16 autocast from the config's ``on``/``off``/``auto``."""
    if choice in ("on", "off"):
        return choice == "on"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def autocast(enabled: bool, device: torch.device) -> contextlib.AbstractContextManager:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def apply_threads(threads: int) -> None:
    """Pin torch's intra-op threads when the config asks (0 keeps torch's own choice)."""
    if threads > 0:
        torch.set_num_threads(threads)
