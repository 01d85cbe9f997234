"""The OpenAI-compatible endpoint under a small, bounded load on loopback, against the engine called directly.

    python benchmarks/serve.py                       # tiny-shape model, 64 requests per contender
    python benchmarks/serve.py --quick               # smoke shape, 12 requests, seconds
    python benchmarks/serve.py --workspace WS --model MODEL_ID     # a registered model
    python benchmarks/serve.py --bundle PATH         # an edge bundle (the numpy runtime behind the engine)

The server (``agent_forge.serve``, the standard library's threading HTTP server) runs on a free loopback
port in this process; clients are the official ``openai`` package. Contenders, in rounds that alternate
so drifts in machine load hit all alike:

- ``engine``: ``engine.decode`` called directly on the same prompt ids, one request after another (the
  baseline: the server decodes one request at a time too);
- ``http x1``: the same requests through HTTP, one client thread (the whole stack's overhead per request);
- ``http xK``: the same requests from K client threads at once (queueing for the one decoder included);
- ``stream x1``: streamed requests, one client thread, with the time to the first piece of text.

Requests decode greedily up to ``--max-tokens`` tokens: the default random model never learnt to stop, so
each runs the full count; a registered model stops at its ``<eos>``, the same in every contender (tokens/s
counts what was generated). The load is bounded in count (``--requests`` per contender) and in time (no
request starts after ``--max-seconds``). Figures: requests/s, tokens/s, p50/p95 latency, each rate as a
ratio of the engine's, and the streamed requests' time to the first piece of text.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import openai
import torch

from agent_forge.config import load_config
from agent_forge.data.tasks import mix_tasks, training_text
from agent_forge.data.tokenizer import BOS_ID, train_tokenizer
from agent_forge.engine import decode
from agent_forge.export.build import blas_threads
from agent_forge.model import ForgeForCausalLM
from agent_forge.phases.common import forge_config
from agent_forge.serve import Backend, Limits, bundle_backend, model_backend, running

PROMPTS = ["What is 12 * 7?\nAnswer:", "Tom has 3 apples and buys 4 more. How many apples does he have?\nAnswer:",
           "Question: Which is heavier, a kilogram of iron or a gram of feathers?\nA. iron\nB. feathers\nAnswer:",
           "Convert 2 km to m.\nAnswer:"]


def random_backend(preset: str) -> Backend:
    """A freshly initialised model of the preset's shape and a tokenizer trained on the task mix: it never
    learnt to stop, so every request costs the same ``max_tokens`` steps."""
    config = load_config(preset=preset)
    tokenizer = train_tokenizer((training_text(e) for e in mix_tasks(1500, seed=0)), config.model.vocab_size)
    torch.manual_seed(0)
    return model_backend(f"random-{preset}", ForgeForCausalLM(forge_config(config)), tokenizer, "random weights")


def registered_backend(workspace: str, model_id: str) -> Backend:
    from agent_forge.model_io import load_model, load_ref, load_tokenizer
    from agent_forge.storage.registry import ModelRegistry
    from agent_forge.storage.workspace import Workspace

    registry = ModelRegistry(Workspace(workspace, create=False).registry_path, readonly=True)
    ref = load_ref(registry, model_id)
    return model_backend(model_id, load_model(ref), load_tokenizer(ref))


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))]


class Contender:
    """One way of running the requests, and what its requests took."""

    def __init__(self, label: str, threads: int, run: Callable[[int], tuple[int, float | None]]) -> None:
        self.label, self.threads, self.run = label, threads, run
        self.latencies: list[float] = []
        self.first_piece: list[float] = []
        self.tokens = 0
        self.seconds = 0.0

    def batch(self, indices: list[int], deadline: float) -> None:
        """Run ``indices`` from ``self.threads`` threads; requests not started by ``deadline`` are skipped."""
        queue, lock = list(indices), threading.Lock()

        def worker() -> None:
            while time.perf_counter() < deadline:
                with lock:
                    if not queue:
                        return
                    index = queue.pop()
                started = time.perf_counter()
                tokens, first = self.run(index)
                with lock:
                    self.latencies.append(time.perf_counter() - started)
                    self.tokens += tokens
                    if first is not None:
                        self.first_piece.append(first - started)

        started = time.perf_counter()
        workers = [threading.Thread(target=worker) for _ in range(self.threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        self.seconds += time.perf_counter() - started

    def figures(self, baseline: Contender | None) -> dict:
        done = len(self.latencies)
        rate = done / self.seconds if self.seconds else 0.0
        row = {"contender": self.label, "requests": done, "requests_per_s": rate,
               "tokens_per_s": self.tokens / self.seconds if self.seconds else 0.0,
               "p50_ms": 1000 * percentile(self.latencies, 0.5) if done else None,
               "p95_ms": 1000 * percentile(self.latencies, 0.95) if done else None}
        if self.first_piece:
            row["first_piece_p50_ms"] = 1000 * statistics.median(self.first_piece)
        if baseline is not None and baseline.seconds:
            row["rate_vs_engine"] = rate / (len(baseline.latencies) / baseline.seconds)
        return row


def contenders(backend: Backend, url: str, max_tokens: int, threads: int) -> list[Contender]:
    ids = [[BOS_ID, *backend.tokenizer.encode(p)] for p in PROMPTS]
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
    args = {"model": backend.name, "max_tokens": max_tokens, "temperature": 0}

    def engine(index: int) -> tuple[int, None]:
        with backend.lock:
            return decode(backend.model, [ids[index % len(ids)]], max_tokens)[0].model_tokens, None

    def http(index: int) -> tuple[int, None]:
        done = client.completions.create(prompt=PROMPTS[index % len(PROMPTS)], **args)
        return done.usage.completion_tokens, None

    def stream(index: int) -> tuple[int, float | None]:
        first, tokens = None, 0
        for chunk in client.completions.create(prompt=PROMPTS[index % len(PROMPTS)], stream=True,
                                               stream_options={"include_usage": True}, **args):
            if first is None and chunk.choices and chunk.choices[0].text:
                first = time.perf_counter()
            tokens = chunk.usage.completion_tokens if chunk.usage else tokens
        return tokens, first

    return [Contender("engine", 1, engine), Contender("http x1", 1, http),
            Contender(f"http x{threads}", threads, http), Contender("stream x1", 1, stream)]


def measure(backend: Backend, args: argparse.Namespace) -> list[dict]:
    limits = Limits(max_tokens=max(args.max_tokens, 1), max_concurrent=args.clients)
    with running(backend, limits) as server:
        group = contenders(backend, server.url, args.max_tokens, args.clients)
        for contender in group:  # warm-up, untimed: first calls allocate caches and connections
            contender.run(0)
        rounds = max(1, args.requests // args.round_size)
        deadline = time.perf_counter() + args.max_seconds
        for round_index in range(rounds):
            indices = list(range(round_index * args.round_size, (round_index + 1) * args.round_size))
            for contender in group:
                contender.batch(indices, deadline)
    return [c.figures(group[0] if c is not group[0] else None) for c in group]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke shape, few requests (for CI)")
    parser.add_argument("--workspace", help="workspace of --model")
    parser.add_argument("--model", help="a registered model id (default: a random model of the preset's shape)")
    parser.add_argument("--bundle", type=Path, help="an edge bundle folder instead")
    parser.add_argument("--requests", type=int, help="requests per contender (default 64, --quick 12)")
    parser.add_argument("--round-size", type=int, default=4, help="requests per contender per round")
    parser.add_argument("--clients", type=int, default=4, help="client threads of the concurrent contender")
    parser.add_argument("--max-tokens", type=int, help="tokens per request (default 32, --quick 8)")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="no request starts after this")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args()
    args.requests = args.requests or (12 if args.quick else 64)
    args.max_tokens = args.max_tokens or (8 if args.quick else 32)
    if args.bundle:
        backend = bundle_backend(args.bundle)
    elif args.model:
        backend = registered_backend(args.workspace or "forge_workspace", args.model)
    else:
        backend = random_backend("smoke" if args.quick else "tiny")
    with blas_threads(args.threads):  # torch's and numpy's BLAS (a bundle's runtime) alike
        rows = measure(backend, args)
    report = {"backend": backend.name, "source": backend.source, "max_tokens": args.max_tokens,
              "clients": args.clients, "threads": args.threads, "machine": platform.processor() or platform.machine(),
              "rows": rows}
    print(f"{backend.name} ({backend.source}), {args.max_tokens} tokens a request, torch threads {args.threads}")
    print(f"{'contender':<11} {'requests':>8} {'req/s':>7} {'tok/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'vs engine':>9} {'first piece p50 ms':>18}")
    for row in rows:
        ratio = f"{row['rate_vs_engine']:.2f}" if "rate_vs_engine" in row else "baseline"
        first = f"{row['first_piece_p50_ms']:.1f}" if "first_piece_p50_ms" in row else ""
        print(f"{row['contender']:<11} {row['requests']:>8} {row['requests_per_s']:>7.2f} {row['tokens_per_s']:>7.1f} "
              f"{row['p50_ms']:>8.1f} {row['p95_ms']:>8.1f} {ratio:>9} {first:>18}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    sys.exit(main())
