"""Training throughput with 1 and 2 processes (DDP over gloo on CPU, NCCL on GPU), measured in one run.

Each configuration is a real ``torchrun`` launch of this file's worker: the preset's model, the Phase 1
MuonGrokfast optimizer, DistributedDataParallel and the same global batch split over the ranks (what
``agent-forge run`` does under torchrun). The worker times ``--steps`` optimizer steps after ``--warmup``
untimed ones and rank 0 prints tokens per second. Configurations:

- 1 process x 2 threads (a plain ``agent-forge run`` on this 2-core machine, the baseline),
- 1 process x 1 thread,
- 2 processes x 1 thread (torchrun; on 2 cores the ratio mostly shows DDP's all-reduce overhead).

    python benchmarks/distributed.py                 # tiny preset, 12 timed steps
    python benchmarks/distributed.py --quick         # smoke preset, 4 timed steps
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch


def worker(preset: str, steps: int, warmup: int) -> None:
    """One rank: train ``warmup + steps`` steps on the preset's model; rank 0 prints JSON figures."""
    from agent_forge.config import load_config
    from agent_forge.data.dataset import PackedDataset
    from agent_forge.data.tasks import mix_tasks, training_text
    from agent_forge.data.tokenizer import train_tokenizer
    from agent_forge.model import ForgeForCausalLM
    from agent_forge.optim import build_optimizer
    from agent_forge.phases.cognate import optimizer_config
    from agent_forge.phases.common import forge_config, lm_step
    from agent_forge.train.distributed import barrier, init_from_env, world, wrap_ddp

    device = torch.device("cpu")
    init_from_env(device)
    rank, size = world()
    config = load_config(preset=preset)
    examples = mix_tasks(2000, seed=0)
    tokenizer = train_tokenizer((training_text(e) for e in examples), config.model.vocab_size)
    batch = config.cognate.train.batch_size
    data = PackedDataset.from_examples(tokenizer, examples, config.data.seq_len, batch // size, 0, rank, size)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    net = wrap_ddp(model, device)
    optimizer = build_optimizer(model, optimizer_config(config.cognate))
    for step in range(warmup + steps):
        if step == warmup:
            barrier()
            start = time.perf_counter()
        out = lm_step(net, data.batch(step))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
    barrier()
    seconds = time.perf_counter() - start
    if rank == 0:
        tokens = steps * batch * config.data.seq_len
        print(json.dumps({"processes": size, "threads": torch.get_num_threads(), "tokens_per_s": tokens / seconds,
                          "ms_per_step": 1000 * seconds / steps}))


def launch(procs: int, threads: int, args: argparse.Namespace) -> dict:
    """Run the worker under torchrun (or plainly for one process); the JSON line rank 0 printed."""
    worker_args = [__file__, "--worker", "--preset", args.preset, "--steps", str(args.steps),
                   "--warmup", str(args.warmup)]
    runner = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs),
              "--master_port", str(29400 + os.getpid() % 500)] if procs > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([*runner, *worker_args], capture_output=True, text=True, env=env, check=False,
                          cwd=Path(__file__).resolve().parents[1])
    if done.returncode != 0:
        raise RuntimeError(f"{procs} process(es) failed: {done.stderr[-2000:]}")
    return json.loads([line for line in done.stdout.splitlines() if line.startswith("{")][-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="smoke preset, 4 timed steps")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.preset, args.steps, args.warmup = "smoke", 4, 1
    if args.worker:
        worker(args.preset, args.steps, args.warmup)
        return
    runs = {"1 proc x 2 threads": launch(1, 2, args), "1 proc x 1 thread": launch(1, 1, args),
            "2 procs x 1 thread": launch(2, 1, args)}
    base = runs["1 proc x 2 threads"]["tokens_per_s"]
    print(f"preset {args.preset}, global batch of Phase 1, {args.steps} timed steps, CPU ({os.cpu_count()} cores)")
    for name, figures in runs.items():
        print(f"{name:>20}: {figures['tokens_per_s']:9.0f} tokens/s  {figures['ms_per_step']:8.1f} ms/step  "
              f"ratio {figures['tokens_per_s'] / base:.2f}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
