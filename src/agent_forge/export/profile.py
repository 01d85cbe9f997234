"""Latency and memory at batch 1, per format, on this CPU.

For each format: load time; prefill latency of each requested length (median of ``repeats``); decode
latency per token (greedy, after a prefill of the shortest length and one warm-up token); file size; and
peak memory as the PEAK RSS DELTA: the process's peak resident set (``VmHWM``, reset through
``/proc/self/clear_refs`` before the format is loaded) minus its resident set just before, after freed
memory was handed back to the OS (``malloc_trim``). It covers loading, prefill and decode. Where /proc
cannot be reset (not Linux) the figure is left out rather than guessed.

A format with a fixed input length (ONNX) reports None for longer prefills, with a note.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import re
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

MEMORY_METHOD = "peak RSS delta (VmHWM reset via /proc/self/clear_refs, baseline after malloc_trim)"


class Stepper(Protocol):
    """A loaded format: ``prefill`` starts a sequence, ``step`` adds one greedy token, ``logits`` scores
    a whole sequence from scratch ((n, V) float32, for the agreement check)."""

    def prefill(self, ids: list[int]) -> None: ...

    def step(self) -> None: ...

    def logits(self, ids: list[int]) -> np.ndarray: ...


@dataclass
class FormatSpec:
    name: str
    files: list[Path]
    load: Callable[[], Stepper]
    max_length: int | None = None
    note: str = ""


@dataclass
class FormatProfile:
    name: str
    file_bytes: int
    load_ms: float
    prefill_ms: dict[int, float | None]
    decode_ms_per_token: float
    decode_context: int
    peak_rss_delta_mb: float | None
    note: str = ""
    threads: int = 1
    memory_method: str = MEMORY_METHOD
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prefill_ms"] = {str(k): v for k, v in self.prefill_ms.items()}
        return out


# ---- steppers --------------------------------------------------------------------------------------------

class TorchStepper:
    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()
        self.cache: Any = None
        self.next = 0

    def prefill(self, ids: list[int]) -> None:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([ids]), use_cache=True)
        self.cache, self.next = out.cache, int(out.logits[0, -1].argmax())

    def step(self) -> None:
        with torch.inference_mode():
            out = self.model(input_ids=torch.tensor([[self.next]]), cache=self.cache, use_cache=True)
        self.cache, self.next = out.cache, int(out.logits[0, -1].argmax())

    def logits(self, ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            return self.model(input_ids=torch.tensor([ids]), use_cache=False).logits[0].float().numpy()


class OnnxStepper:
    """Full-sequence graph: every step re-runs the window (the graph holds no cache)."""

    def __init__(self, runner: Any) -> None:
        self.runner, self.ids = runner, []

    def prefill(self, ids: list[int]) -> None:
        self.ids = list(ids)
        self.ids.append(int(np.argmax(self.runner.logits(self.ids)[-1])))

    def step(self) -> None:
        self.ids.append(int(np.argmax(self.runner.logits(self.ids)[-1])))

    def logits(self, ids: list[int]) -> np.ndarray:
        return self.runner.logits(ids)


class RuntimeStepper:
    def __init__(self, model: Any) -> None:
        self.model, self.cache, self.next = model, None, 0

    def prefill(self, ids: list[int]) -> None:
        self.cache = self.model.new_cache()
        logits, _ = self.model.forward(np.asarray(ids), self.cache, last_only=True)
        self.next = int(np.argmax(logits[-1]))

    def step(self) -> None:
        logits, _ = self.model.forward(np.asarray([self.next]), self.cache, last_only=True)
        self.next = int(np.argmax(logits[-1]))

    def logits(self, ids: list[int]) -> np.ndarray:
        return self.model.forward(np.asarray(ids))[0]


# ---- memory ----------------------------------------------------------------------------------------------

def _status_kb(key: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{key}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(found.group(1)) if found else None


def _release_freed_memory() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_rss_delta() -> Iterator[dict[str, float | None]]:
    """Yields a dict that holds ``mb`` (peak RSS growth inside the block) when the block ends."""
    _release_freed_memory()
    result: dict[str, float | None] = {"mb": None}
    baseline = _status_kb("VmRSS")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        resettable = baseline is not None
    except OSError:
        resettable = False
    yield result
    peak = _status_kb("VmHWM")
    if resettable and peak is not None and baseline is not None:
        result["mb"] = max(peak - baseline, 0) * 1024 / 1e6


# ---- timing ----------------------------------------------------------------------------------------------

def _median_ms(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def _decode_ms(stepper: Stepper, context: list[int], tokens: int) -> float:
    stepper.prefill(context)
    stepper.step()
    start = time.perf_counter()
    for _ in range(tokens):
        stepper.step()
    return (time.perf_counter() - start) * 1000.0 / max(tokens, 1)


def _timings(stepper: Stepper, tokens: Sequence[int], lengths: Sequence[int], context: list[int],
             decode_tokens: int, repeats: int) -> tuple[dict[int, float], float]:
    stepper.prefill(context)  # warm-up: first calls allocate and pick kernels
    prefill = {n: _median_ms(lambda n=n: stepper.prefill(list(tokens[:n])), repeats) for n in lengths}
    return prefill, _decode_ms(stepper, context, decode_tokens)


def profile_format(spec: FormatSpec, tokens: Sequence[int], lengths: Sequence[int], decode_tokens: int,
                   repeats: int, threads: int = 1) -> tuple[FormatProfile, Stepper]:
    """Load, prefill each length, decode; memory over all of it, timings after one warm-up call.

    Returns the loaded format too, so later checks use the very object that was measured.
    """
    limit = spec.max_length or len(tokens)
    fitting = [n for n in lengths if n <= min(limit, len(tokens))]
    context = list(tokens[: min(min(lengths), limit)])
    with peak_rss_delta() as memory:
        start = time.perf_counter()
        stepper = spec.load()
        load_ms = (time.perf_counter() - start) * 1000.0
        prefill, decode = _timings(stepper, tokens, fitting, context, decode_tokens, repeats)
    prefill_all: dict[int, float | None] = {n: prefill.get(n) for n in lengths}
    note = spec.note
    if len(fitting) < len(lengths):
        note = (note + "; " if note else "") + f"inputs longer than {limit} tokens do not fit this format"
    profile = FormatProfile(spec.name, sum(p.stat().st_size for p in spec.files), load_ms, prefill_all,
                            decode, len(context), memory["mb"], note, threads)
    return profile, stepper
