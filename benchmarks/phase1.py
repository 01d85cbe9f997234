"""Phase 1 model benchmark: training step vs a same-size Llama, TRM cost, decode/prefill latency, peak RSS.

    python benchmarks/phase1.py [--quick] [--threads N] [--json out.json]

Everything is measured in this process on the same machine with the same thread count, each number next
to its baseline, except the peak-RSS probe, which runs spec25m training steps in a fresh interpreter.
- training: forward + backward + AdamW step. "backbone" is our model with one recursion step (T=1); the
  baseline is HF `LlamaForCausalLM` (SDPA attention) with the same width, depth, heads, MLP width,
  vocabulary and tied embeddings; "full_trm" is our model with T_max steps and deep supervision. Each
  configuration runs in fp32 and under bf16 autocast; the three models are timed in alternation so load
  drifts on a shared machine hit all alike.
- latency: spec25m, batch 1, eval: prefill of 512 tokens and cached decode per token after it, ours and
  the Llama twin (DynamicCache), fp32 and bf16.
- peak RSS: VmHWM of a fresh interpreter running two spec25m training steps (T_max=3, AdamW).
Times are reported as wall time and as process CPU time (`*_cpu_ms`, summed over threads): on a shared
machine wall time swells with other jobs' load while CPU time at one thread does not, so run with
`--threads 1` there and read the CPU ratios. The last lines check the targets of issue 3.
glibc is told to keep freed memory (mallopt), for both models alike: without it every large tensor is a
fresh mmap whose page faults cost more than the arithmetic on a small CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median_ms, subprocess_peak_rss_mb
from agent_forge.model import ForgeConfig, ForgeForCausalLM

TARGETS = {"backbone_vs_llama": 1.2, "decode_ms_per_token": 100.0, "peak_rss_mb": 8192.0}


@dataclass
class TrainCase:
    shape: str
    batch: int
    seq_len: int


FULL_CASES = [TrainCase("spec25m", 1, 2048), TrainCase("spec25m", 4, 512), TrainCase("tiny", 16, 128)]
QUICK_CASES = [TrainCase("spec25m", 1, 512), TrainCase("tiny", 16, 128)]


def keep_freed_memory() -> bool:
    """M_MMAP_THRESHOLD and M_TRIM_THRESHOLD to 1 GiB, so glibc reuses freed blocks instead of unmapping."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(-3, 1 << 30)) and bool(libc.mallopt(-1, 1 << 30))


def cpu_matrix_flags() -> str:
    """The CPU features that decide whether bf16 matmuls can beat fp32 (AMX or AVX512-BF16)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    wanted = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")
    return ",".join(f for f in wanted if f in flags) or "none"


def llama_twin(config: ForgeConfig) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    twin = LlamaConfig(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.mlp_hidden,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        max_position_embeddings=config.max_seq_len,
        tie_word_embeddings=True,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(twin)


def train_step_fn(model: torch.nn.Module, ids: torch.Tensor, bf16: bool) -> Callable[[], None]:
    """One forward + backward + AdamW step on fixed random tokens."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def interleaved_times(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall ms and median process-CPU ms of functions timed in alternation.

    CPU time sums all threads; on a crowded machine (other jobs on the same cores) it stays close to what
    an idle machine's wall time would be with one thread, while wall time swells with the load."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append((time.perf_counter() - start) * 1000.0)
            cpu[name].append((time.process_time() - start_cpu) * 1000.0)
    median = statistics.median
    return {k: median(v) for k, v in wall.items()}, {k: median(v) for k, v in cpu.items()}


def bench_training(case: TrainCase, repeats: int) -> list[dict]:
    """Backbone (T=1) vs Llama, and the full TRM step (T=T_max) vs the backbone, fp32 and bf16."""
    torch.manual_seed(0)
    config = ForgeConfig.from_shape(case.shape)
    models = {
        "forge_backbone": ForgeForCausalLM(ForgeConfig.from_shape(case.shape, trm_t_max=1)),
        "llama": llama_twin(config),
        "forge_full_trm": ForgeForCausalLM(config),
    }
    ids = torch.randint(3, config.vocab_size, (case.batch, case.seq_len))
    tokens = case.batch * case.seq_len
    rows = []
    for bf16 in (False, True):
        fns = {name: train_step_fn(model, ids, bf16) for name, model in models.items()}
        ms, cpu = interleaved_times(fns, repeats=repeats)
        rows.append(
            {
                **asdict(case),
                "bf16": bf16,
                "t_max": config.trm_t_max,
                **{f"{k}_ms": round(v, 1) for k, v in ms.items()},
                **{f"{k}_cpu_ms": round(v, 1) for k, v in cpu.items()},
                **{f"{k}_tok_s": round(tokens / v * 1000.0) for k, v in ms.items()},
                "backbone_vs_llama": round(ms["forge_backbone"] / ms["llama"], 3),
                "backbone_vs_llama_cpu": round(cpu["forge_backbone"] / cpu["llama"], 3),
                "full_trm_vs_backbone": round(ms["forge_full_trm"] / ms["forge_backbone"], 3),
                "full_trm_vs_backbone_cpu": round(cpu["forge_full_trm"] / cpu["forge_backbone"], 3),
            }
        )
    fp32, bf16_row = rows
    for name in models:
        bf16_row[f"{name}_bf16_speedup"] = round(fp32[f"{name}_ms"] / bf16_row[f"{name}_ms"], 3)
    return rows


def forge_decoder(model: ForgeForCausalLM, ids: torch.Tensor) -> tuple[Callable, Callable]:
    """prefill() -> state, step(state) -> state for our model (ForgeCache)."""

    def prefill():
        out = model(ids, use_cache=True, logits_to_keep=1)
        return out.cache, out.logits[:, -1].argmax(-1, keepdim=True)

    def step(state):
        cache, token = state
        out = model(token, cache=cache)
        return cache, out.logits[:, -1].argmax(-1, keepdim=True)

    return prefill, step


def llama_decoder(model: torch.nn.Module, ids: torch.Tensor) -> tuple[Callable, Callable]:
    """The same for the Llama twin with its DynamicCache."""

    def prefill():
        out = model(ids, use_cache=True, logits_to_keep=1)
        return out.cache, out.logits[:, -1].argmax(-1, keepdim=True)

    def step(state):
        cache, token = state
        out = model(token, cache=cache, use_cache=True)
        return out.cache, out.logits[:, -1].argmax(-1, keepdim=True)

    return prefill, step


@torch.no_grad()
def time_decoder(prefill: Callable, step: Callable, new_tokens: int, repeats: int) -> dict[str, float]:
    """Median prefill ms and per-token decode ms, wall and process CPU time (each repeat starts from a
    fresh prefill). CPU time sums all threads; on a crowded machine it shows what wall time hides."""
    prefill_ms = median_ms(prefill, repeats=repeats, warmup=1)
    wall, cpu = [], []
    for _ in range(repeats + 1):
        state = prefill()
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(new_tokens):
            state = step(state)
        wall.append((time.perf_counter() - start) * 1000.0 / new_tokens)
        cpu.append((time.process_time() - start_cpu) * 1000.0 / new_tokens)
    return {
        "prefill_ms": prefill_ms,
        "decode_ms_per_token": statistics.median(wall[1:]),
        "decode_cpu_ms_per_token": statistics.median(cpu[1:]),
    }


def bench_latency(context: int, new_tokens: int, repeats: int, bf16: bool) -> dict:
    """spec25m vs its Llama twin, batch 1, eval: prefill of `context` tokens, cached decode per token."""
    torch.manual_seed(0)
    config = ForgeConfig.from_shape("spec25m")
    forge, llama = ForgeForCausalLM(config).eval(), llama_twin(config).eval()
    ids = torch.randint(3, config.vocab_size, (1, context))
    row: dict = {"context": context, "new_tokens": new_tokens, "bf16": bf16}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for name, decoder in (("forge", forge_decoder(forge, ids)), ("llama", llama_decoder(llama, ids))):
            for key, value in time_decoder(*decoder, new_tokens, repeats).items():
                row[f"{name}_{key}"] = round(value, 2)
    row["prefill_vs_llama"] = round(row["forge_prefill_ms"] / row["llama_prefill_ms"], 3)
    row["decode_vs_llama"] = round(row["forge_decode_ms_per_token"] / row["llama_decode_ms_per_token"], 3)
    return row


RSS_PROBE = """
import sys, torch
from agent_forge.model import ForgeConfig, ForgeForCausalLM
batch, seq, threads = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
bf16, checkpointing = sys.argv[4] == "1", sys.argv[5] == "1"
torch.set_num_threads(threads)
torch.manual_seed(0)
model = ForgeForCausalLM(ForgeConfig.from_shape("spec25m")).train()
if checkpointing:
    model.activation_checkpointing_enable()
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
ids = torch.randint(3, 32768, (batch, seq))
for _ in range(2):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = model(ids, labels=ids).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
RESULT = {"batch": batch, "seq_len": seq, "bf16": bf16, "checkpointing": checkpointing, "loss": float(loss)}
"""


def bench_rss(batch: int, seq_len: int, threads: int, bf16: bool, checkpointing: bool = False) -> dict:
    """Peak RSS of two spec25m training steps (T_max=3, AdamW) measured in a fresh interpreter."""
    flags = ["1" if bf16 else "0", "1" if checkpointing else "0"]
    result = subprocess_peak_rss_mb(RSS_PROBE, [str(batch), str(seq_len), str(threads), *flags])
    result["peak_rss_mb"] = round(result["peak_rss_mb"], 1)
    return result


def summary(results: dict) -> list[str]:
    """One line per target of issue 3, with the measured value and whether it holds."""
    lines = []
    for row in results["training"]:
        if row["shape"] == "spec25m":
            value, cpu = row["backbone_vs_llama"], row["backbone_vs_llama_cpu"]
            lines.append(
                f"backbone step / llama step (spec25m {row['batch']}x{row['seq_len']}, "
                f"{'bf16' if row['bf16'] else 'fp32'}): wall {value}, cpu {cpu} "
                f"(target <= {TARGETS['backbone_vs_llama']}: wall {'ok' if value <= 1.2 else 'MISSED'}, "
                f"cpu {'ok' if cpu <= 1.2 else 'MISSED'})"
            )
    for row in results["latency"]:
        value, cpu = row["forge_decode_ms_per_token"], row["forge_decode_cpu_ms_per_token"]
        lines.append(
            f"decode ms/token at {row['context']} context ({'bf16' if row['bf16'] else 'fp32'}): "
            f"wall {value}, cpu {cpu}, prefill {row['forge_prefill_ms']} ms "
            f"(target < {TARGETS['decode_ms_per_token']}: wall {'ok' if value < 100.0 else 'MISSED'})"
        )
    for row in results["rss"]:
        value = row["peak_rss_mb"]
        lines.append(
            f"peak RSS spec25m step {row['batch']}x{row['seq_len']} bf16={row['bf16']} "
            f"checkpointing={row['checkpointing']}: {value} MB "
            f"(target < {TARGETS['peak_rss_mb']:.0f}: {'ok' if value < 8192.0 else 'MISSED'})"
        )
    return lines


def run_all(quick: bool, threads: int) -> dict:
    """Every measurement, each row printed as JSON as soon as it exists."""
    repeats = 3 if quick else 5
    results: dict = {"training": [], "latency": [], "rss": []}
    for case in QUICK_CASES if quick else FULL_CASES:
        for row in bench_training(case, repeats):
            results["training"].append(row)
            print(json.dumps(row), flush=True)
    for bf16 in (False, True):
        row = bench_latency(512, 8 if quick else 32, repeats, bf16)
        results["latency"].append(row)
        print(json.dumps(row), flush=True)
    rss_batch, rss_seq = (1, 512) if quick else (4, 2048)
    rss_cases = ((False, False), (True, False)) if quick else ((False, False), (True, False), (False, True))
    for bf16, checkpointing in rss_cases:
        row = bench_rss(rss_batch, rss_seq, threads, bf16, checkpointing)
        results["rss"].append(row)
        print(json.dumps(row), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats (a few minutes)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(
        f"# {platform.processor() or platform.machine()} ({os.cpu_count()} cpus, {cpu_matrix_flags()}), "
        f"torch {torch.__version__}, threads {args.threads}, mallopt {'on' if tuned else 'off'}, "
        f"load average at start {load}",
        flush=True,
    )
    results = {"threads": args.threads, "mallopt": tuned, **run_all(args.quick, args.threads)}
    results["load_average_end"] = list(os.getloadavg())
    results["summary"] = summary(results)
    print(f"# load average at end {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    for line in results["summary"]:
        print(f"# {line}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
