"""Small timing helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence


def median_ms(fn: Callable[[], object], repeats: int = 5, warmup: int = 2) -> float:
    """Median wall time of fn() in milliseconds, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def interleaved_median_ms(
    fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 2
) -> dict[str, float]:
    """Median ms of several functions timed in alternation, so drifts in machine load hit all alike."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: statistics.median(values) for name, values in times.items()}


def subprocess_peak_rss_mb(code: str, args: Sequence[str] = (), timeout: float = 1800.0) -> dict:
    """Run `code` in a fresh interpreter; return its peak RSS (MB) and the JSON it printed last.

    The child reads VmHWM from /proc/self/status after running: unlike getrusage's ru_maxrss, which Linux
    carries over from the forking parent across exec, it covers only the child's own address space.
    """
    wrapper = (
        "import json, sys\n"
        f"{code}\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0].split()[1]\n"
        "print(json.dumps({'peak_rss_mb': int(hwm) / 1024.0, **globals().get('RESULT', {})}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"subprocess failed ({done.returncode}): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
