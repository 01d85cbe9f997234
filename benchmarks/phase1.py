"""Phase 1 model benchmark: training step vs a same-size Llama, TRM cost, decode/prefill latency, peak RSS.

    python benchmarks/phase1.py [--quick] [--threads N] [--json out.json]

Everything runs in this process on the same machine with the same thread count, except the peak-RSS
probe, which runs a spec25m training step in a fresh interpreter. Training steps are forward + backward
+ AdamW step; "backbone" means our model with one recursion step (T=1); the Llama baseline has the same
width, depth, heads, MLP width, vocabulary and tied embeddings (HF `LlamaForCausalLM`, SDPA attention).
glibc is told to keep freed memory (mallopt), for both models alike: without it every large tensor is a
fresh mmap whose page faults cost more than the arithmetic on a small CPU.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import interleaved_median_ms, median_ms, subprocess_peak_rss_mb
from agent_forge.model import ForgeConfig, ForgeForCausalLM


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
    )
    return LlamaForCausalLM(twin)


def train_step_fn(model: torch.nn.Module, ids: torch.Tensor, bf16: bool):
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


def bench_training(case: TrainCase, repeats: int) -> list[dict]:
    """Backbone (T=1) vs Llama, and the full TRM step (T=T_max) vs the backbone, fp32 and bf16."""
    torch.manual_seed(0)
    config = ForgeConfig.from_shape(case.shape)
    full = ForgeForCausalLM(config)
    backbone = ForgeForCausalLM(ForgeConfig.from_shape(case.shape, trm_t_max=1))
    llama = llama_twin(config)
    ids = torch.randint(3, config.vocab_size, (case.batch, case.seq_len))
    tokens = case.batch * case.seq_len
    rows = []
    for bf16 in (False, True):
        fns = {
            "forge_backbone": train_step_fn(backbone, ids, bf16),
            "llama": train_step_fn(llama, ids, bf16),
            "forge_full_trm": train_step_fn(full, ids, bf16),
        }
        ms = interleaved_median_ms(fns, repeats=repeats, warmup=1)
        rows.append(
            {
                **asdict(case),
                "bf16": bf16,
                "t_max": config.trm_t_max,
                **{f"{k}_ms": round(v, 1) for k, v in ms.items()},
                **{f"{k}_tok_s": round(tokens / v * 1000.0) for k, v in ms.items()},
                "backbone_vs_llama": round(ms["forge_backbone"] / ms["llama"], 3),
                "full_trm_vs_backbone": round(ms["forge_full_trm"] / ms["forge_backbone"], 3),
            }
        )
    return rows


def bench_latency(context: int, new_tokens: int, repeats: int) -> dict:
    """spec25m, batch 1, eval: prefill of `context` tokens and cached decode per token after it."""
    torch.manual_seed(0)
    model = ForgeForCausalLM(ForgeConfig.from_shape("spec25m")).eval()
    ids = torch.randint(3, 32768, (1, context))

    @torch.no_grad()
    def prefill():
        return model(ids, use_cache=True, logits_to_keep=1)

    @torch.no_grad()
    def decode() -> None:
        out = prefill()
        cache, token = out.cache, out.logits[:, -1].argmax(-1, keepdim=True)
        for _ in range(new_tokens):
            out = model(token, cache=cache)
            token = out.logits[:, -1].argmax(-1, keepdim=True)

    prefill_ms = median_ms(prefill, repeats=repeats, warmup=1)
    total_ms = median_ms(decode, repeats=repeats, warmup=1)
    return {
        "context": context,
        "prefill_ms": round(prefill_ms, 1),
        "decode_ms_per_token": round((total_ms - prefill_ms) / new_tokens, 2),
    }


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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes and few repeats")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for every measurement")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory()
    repeats = 3 if args.quick else 5
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, threads {args.threads}, "
        f"mallopt {'on' if tuned else 'off'}"
    )
    results: dict = {"threads": args.threads, "mallopt": tuned, "training": []}
    for case in QUICK_CASES if args.quick else FULL_CASES:
        for row in bench_training(case, repeats):
            results["training"].append(row)
            print(json.dumps(row))
    results["latency"] = bench_latency(512, 8 if args.quick else 32, repeats)
    print(json.dumps(results["latency"]))
    rss_batch, rss_seq = (1, 512) if args.quick else (4, 2048)
    results["rss"] = [
        bench_rss(rss_batch, rss_seq, args.threads, bf16, checkpointing)
        for bf16, checkpointing in ((False, False), (True, False), (False, True))
    ]
    for row in results["rss"]:
        print(json.dumps(row))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
