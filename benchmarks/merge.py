"""Time and peak memory of Phase 2's merges on spec25m-sized state dicts (about 26.7M parameters each).

Each of the eight combos runs in its own subprocess so its peak memory is not hidden by another's: the
worker builds a trunk and three specialists (trunk + small noise, as Phase 1 forks them), records its RSS,
runs ``apply_merge_combo`` while a thread samples RSS every 2 ms, and reports seconds and the peak RSS
above the baseline. The fitness scores and Fisher tensors fed to stage 3 are random timing inputs, not
measurements: this benchmark times the merge arithmetic, not fitness evaluation.

Shapes come from the spec25m preset: d 384 x 8 layers, MLP 1024, vocab 32768, tied embedding (stored
once, as safetensors stores it), attention q/k/v/o, SwiGLU gate/up/down, two norms per layer.

    python benchmarks/merge.py                 # spec25m shapes, all combos and single methods
    python benchmarks/merge.py --quick         # CI-sized: d 64 x 2 layers, vocab 2048
    python benchmarks/merge.py --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import psutil
import torch

from agent_forge.merge import (
    apply_merge_combo,
    dare,
    describe_combo,
    dfs,
    frankenmerge,
    linear,
    mutate,
    slerp_chain,
    ties,
)


@dataclass(frozen=True)
class Shape:
    vocab: int = 32768
    hidden: int = 384
    layers: int = 8
    mlp: int = 1024


QUICK = Shape(vocab=2048, hidden=64, layers=2, mlp=172)


def spec25m_shape() -> Shape:
    """The spec25m preset's model section, read from the shipped preset so the two cannot drift."""
    from agent_forge.config import load_config

    model = load_config("spec25m").model
    return Shape(
        vocab=model.vocab_size, hidden=model.hidden_size, layers=model.num_layers, mlp=model.mlp_hidden
    )


def tensor_shapes(shape: Shape) -> dict[str, tuple[int, ...]]:
    d, m = shape.hidden, shape.mlp
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (shape.vocab, d)}
    for i in range(shape.layers):
        prefix = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            shapes[f"{prefix}attn.{name}.weight"] = (d, d)
        shapes |= {f"{prefix}mlp.gate.weight": (m, d), f"{prefix}mlp.up.weight": (m, d)}
        shapes |= {
            f"{prefix}mlp.down.weight": (d, m),
            f"{prefix}norm1.weight": (d,),
            f"{prefix}norm2.weight": (d,),
        }
    shapes["model.norm.weight"] = (d,)
    return shapes


def build_family(shape: Shape, seed: int = 0) -> tuple[dict, list[dict]]:
    """A trunk (std 0.02, unit norms) and three specialists at distance 0.002 from it."""
    gen = torch.Generator().manual_seed(seed)
    base = {
        k: torch.ones(s) if len(s) == 1 else torch.randn(s, generator=gen).mul_(0.02)
        for k, s in tensor_shapes(shape).items()
    }
    models = [
        {k: v + torch.randn(v.shape, generator=gen).mul_(0.002) for k, v in base.items()} for _ in range(3)
    ]
    return base, models


class PeakRss:
    """Samples this process's RSS in a thread; ``peak_mb`` is the highest sample above the start."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self._process, self._interval = psutil.Process(), interval_s
        self._stop = threading.Event()
        self.baseline = self._process.memory_info().rss
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def peak_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


@dataclass
class Measurement:
    name: str
    seconds: float
    peak_rss_delta_mb: float
    output_mb: float


def measure(name: str, run: Callable[[], dict], repeats: int) -> Measurement:
    """Median seconds over ``repeats``; peak RSS above the pre-call baseline over all of them."""
    times, peaks, out_mb = [], [], 0.0
    for _ in range(repeats):
        with PeakRss() as rss:
            start = time.perf_counter()
            result = run()
            times.append(time.perf_counter() - start)
        out_mb = sum(t.numel() * t.element_size() for t in result.values()) / 2**20
        peaks.append(rss.peak_mb)
        del result
    return Measurement(name, statistics.median(times), max(peaks), out_mb)


def method_runs(base: dict, models: list[dict], importance: list[dict]) -> dict[str, Callable[[], dict]]:
    """The single methods Phase 2 calls, on the same inputs as the combos."""
    gen = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    return {
        "linear(3)": lambda: linear(models),
        "slerp_chain(3)": lambda: slerp_chain(models),
        "dare(p=0.9)": lambda: dare(models[0], base, 0.9, gen()),
        "ties(1 delta, k=0.2)": lambda: ties(models[0], base, 0.2),
        "ties(3 deltas, k=0.2)": lambda: ties(models, base, 0.2),
        "frankenmerge(weighted, 4)": lambda: frankenmerge(
            [base, *models], [0.4, 0.3, 0.2, 0.1], generator=gen(), mode="weighted"
        ),
        "dfs(4)": lambda: dfs([base, *models], importance),
        "mutate(0.01, 0.01)": lambda: mutate(models[0], 0.01, 0.01, gen()),
    }


def combo_run(combo_id: int, base: dict, models: list[dict], importance: list[dict]) -> Callable[[], dict]:
    timing_fitness = [0.4, 0.3, 0.2, 0.1]  # timing input only (see module docstring)
    return lambda: apply_merge_combo(
        models,
        combo_id,
        base,
        fitness=timing_fitness,
        importance=importance,
        generator=torch.Generator().manual_seed(3),
    )


def worker(tasks: list[str], quick: bool, repeats: int, threads: int) -> None:
    """Run measurements in this (fresh) process and print each as one JSON line."""
    torch.set_num_threads(threads)
    base, models = build_family(QUICK if quick else spec25m_shape())
    gen = torch.Generator().manual_seed(2)
    importance = [
        {k: torch.randn(v.shape, generator=gen).square_() for k, v in base.items()} for _ in range(4)
    ]
    methods = method_runs(base, models, importance)
    for task in tasks:
        if task.startswith("combo"):
            combo_id = int(task.removeprefix("combo"))
            result = measure(describe_combo(combo_id), combo_run(combo_id, base, models, importance), repeats)
        else:
            result = measure(task, methods[task], repeats)
        print(json.dumps(asdict(result)), flush=True)


def run_workers(tasks: list[str], args: argparse.Namespace) -> list[Measurement]:
    """One process per task for clean peaks; --quick shares one process to skip 16 torch imports."""
    batches = [tasks] if args.quick else [[task] for task in tasks]
    results = []
    for batch in batches:
        command = [sys.executable, __file__, "--worker", ";".join(batch), "--repeats", str(args.repeats)]
        command += ["--threads", str(args.threads)] + (["--quick"] if args.quick else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results += [Measurement(**json.loads(line)) for line in output.strip().splitlines()]
    return results


def print_table(title: str, rows: list[Measurement]) -> None:
    print(f"\n{title}")
    print(f"{'merge':<40} {'seconds':>9} {'peak RSS +MB':>13} {'output MB':>10}")
    for row in rows:
        print(f"{row.name:<40} {row.seconds:>9.3f} {row.peak_rss_delta_mb:>13.1f} {row.output_mb:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny shapes for CI")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--combos-only", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker.split(";"), args.quick, args.repeats, args.threads)
        return
    shape = QUICK if args.quick else spec25m_shape()
    params = sum(torch.Size(s).numel() for s in tensor_shapes(shape).values())
    print(f"shapes: {shape} -> {params:,} parameters per model (float32, {params * 4 / 2**20:.1f} MB)")
    where = "all in one process" if args.quick else "one process each"
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, {where}")
    combos = run_workers([f"combo{i}" for i in range(8)], args)
    print_table("Three-model merge per combo (apply_merge_combo)", combos)
    if not args.combos_only:
        names = list(method_runs({}, [{}, {}, {}], [{}] * 4))
        print_table("Single methods", run_workers(names, args))


if __name__ == "__main__":
    main()
