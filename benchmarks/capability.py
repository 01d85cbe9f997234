"""Held-out accuracy per kind against training wall-clock: our Phase 1 model against a plain HF Llama.

    python benchmarks/capability.py [--quick] [--budgets 120,480] [--contenders ours llama]
                                    [--seeds 0] [--threads 2] [--json out.json]

Every contender trains on the same batches (the tiny preset's data, tokenizer and packing) for the same
training seconds; the contenders take turns step by step in one process, so load drifts on a shared
machine hit all alike, and evaluation time is not counted. At each budget every contender is scored on
the full D6 held-out set (the session's own, rebuilt from the preset's seed) with ``accuracy_table``.

A contender is ``MODEL:OPTIMIZER:LOSS[:LR]``:
- MODEL ``ours`` (ForgeForCausalLM, the preset's shape) or ``llama`` (LlamaForCausalLM with the same
  width, depth, heads, vocabulary and tied embeddings; its MLP widened to our parameter count);
- OPTIMIZER ``muon`` (MuonGrokfast with D11's Phase 1 rates times ``LR``, default the preset's
  lr_scale) or ``adamw`` (betas 0.9/0.95, weight decay 0.1, peak LR ``LR``, default 3e-3);
- LOSS ``full`` (every token), ``answer`` (answer tokens and <eos> only) or ``mixNN`` (answers, plus the
  prompts of NN% of the examples).
Both schedules are warm-up then cosine over the largest budget, by elapsed training time.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from agent_forge.config import load_config
from agent_forge.data.dataset import PackedDataset
from agent_forge.data.sources import heldout_examples, load_mixture, source_configs, training_examples
from agent_forge.eval.capability import accuracy_table
from agent_forge.eval.heldout import HeldoutSet, evaluate
from agent_forge.model import ForgeForCausalLM
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import build_tokenizer, forge_config, lm_step
from agent_forge.train.loop import warmup_cosine
from agent_forge.train.precision import autocast, cpu_has_bf16

WARMUP_STEPS = 10


@dataclass
class Contender:
    """One model, its optimizer and loss, and the training time it has had so far."""

    label: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step_fn: Callable[[torch.nn.Module, dict], torch.Tensor]
    prompt_share: float  # share of examples whose prompt tokens are scored (1: the full LM loss)
    train_seconds: float = 0.0
    steps: int = 0
    results: dict[int, dict] = field(default_factory=dict)


def loss_share(loss: str) -> float:
    """The share of examples whose prompt tokens the loss scores: full 1, answer 0, mixNN NN%."""
    if loss in ("full", "answer"):
        return 1.0 if loss == "full" else 0.0
    return int(loss.removeprefix("mix")) / 100


class LabelledData:
    """The same packed rows with one set of labels per loss share the contenders use."""

    def __init__(self, tokenizer, examples, preset, losses: set[str]) -> None:
        shares = {loss_share(loss) for loss in losses}
        seq, batch, seed = preset.data.seq_len, preset.cognate.train.batch_size, preset.data.seed
        self.sets = {share: PackedDataset.from_examples(tokenizer, examples, seq, batch, seed,
                                                        prompt_loss_share=share) for share in shares}
        self.any = next(iter(self.sets.values()))

    def __len__(self) -> int:
        return len(self.any)

    def batch(self, step: int) -> dict:
        ids, labels = None, {}
        for share, data in self.sets.items():
            batch = data.batch(step)
            ids = batch["input_ids"] if isinstance(batch, dict) else batch
            labels[share] = batch["labels"] if isinstance(batch, dict) else batch
        return {"input_ids": ids, "labels": labels}


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def llama_like(config, target_params: int) -> torch.nn.Module:
    """A LlamaForCausalLM of our width/depth/heads/vocab whose MLP width brings it to ``target_params``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    def build(mlp: int) -> torch.nn.Module:
        twin = LlamaConfig(vocab_size=config.vocab_size, hidden_size=config.hidden_size, intermediate_size=mlp,
                           num_hidden_layers=config.num_layers, num_attention_heads=config.num_heads,
                           max_position_embeddings=config.max_seq_len, tie_word_embeddings=True,
                           attn_implementation="sdpa")
        return LlamaForCausalLM(twin)

    per_unit = 3 * config.hidden_size * config.num_layers  # gate, up and down projections
    base = parameter_count(build(config.mlp_hidden)) - per_unit * config.mlp_hidden
    return build(max(8, round((target_params - base) / per_unit)))


def ours_step(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return lm_step(model, batch).loss


def llama_step(model: torch.nn.Module, batch: dict) -> torch.Tensor:
    return model(input_ids=batch["input_ids"], labels=batch["labels"]).loss


def make_contender(spec: str, preset, seed: int) -> Contender:
    parts = spec.split(":")
    name, opt, loss = [*parts, "muon", "full"][:3]
    lr = float(parts[3]) if len(parts) > 3 else None
    torch.manual_seed(seed)
    ours = ForgeForCausalLM(forge_config(preset))
    model = ours if name == "ours" else llama_like(preset.model, parameter_count(ours))
    if opt == "muon":  # LR is then the multiplier of D11's Phase 1 rates (default: the preset's lr_scale)
        optimizer = build_optimizer(model, MuGrokConfig.from_phase("1").scaled(lr or preset.cognate.lr_scale))
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr or 3e-3, betas=(0.9, 0.95), weight_decay=0.1)
    step = ours_step if name == "ours" else llama_step
    return Contender(f"{spec}#s{seed}", model.train(), optimizer, step, loss_share(loss))


def train_step(contender: Contender, batch: dict, progress: float, bf16: bool) -> None:
    """One optimizer step at the schedule's learning rate for ``progress`` (0..1 of the largest budget)."""
    factor = (contender.steps + 1) / WARMUP_STEPS if contender.steps < WARMUP_STEPS else warmup_cosine(
        int(progress * 10_000), 10_000, 0)
    for group in contender.optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor
    batch = {"input_ids": batch["input_ids"], "labels": batch["labels"][contender.prompt_share]}
    with autocast(bf16, torch.device("cpu")):
        loss = contender.step_fn(contender.model, batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(contender.model.parameters(), 1.0)
    contender.optimizer.step()
    contender.optimizer.zero_grad(set_to_none=True)
    contender.steps += 1


def score(contender: Contender, heldout: HeldoutSet) -> dict:
    result = evaluate(contender.model, heldout)  # one pass gives the loss and each task's exact match
    table = accuracy_table(heldout.examples, result.correct)
    loss = result.loss
    contender.model.train()
    return {"steps": contender.steps, "ms_per_step": 1000.0 * contender.train_seconds / contender.steps,
            "heldout_loss": loss, **table}


def race(contenders: list[Contender], data: LabelledData, budgets: list[int], heldout: HeldoutSet,
         bf16: bool) -> None:
    """Turn by turn, one step each, until every contender has trained for the largest budget."""
    horizon, step = max(budgets), 0
    while any(c.train_seconds < horizon for c in contenders):
        batch = data.batch(step)
        for contender in contenders:
            if contender.train_seconds >= horizon:
                continue
            started = time.perf_counter()
            train_step(contender, batch, contender.train_seconds / horizon, bf16)
            contender.train_seconds += time.perf_counter() - started
            for budget in budgets:
                if budget not in contender.results and contender.train_seconds >= budget:
                    contender.results[budget] = score(contender, heldout)
                    print(summary_line(contender.label, budget, contender.results[budget]), flush=True)
        step += 1


def summary_line(label: str, budget: int, result: dict) -> str:
    kinds = result["kinds"]
    arith_l1 = kinds.get("arith", {}).get("levels", {}).get(1, {}).get("accuracy", math.nan)
    parts = [f"{k} {v['accuracy']:.3f}" for k, v in kinds.items()]
    return (f"{label:<28} {budget:>4}s steps {result['steps']:>5} ({result['ms_per_step']:.0f} ms) "
            f"overall {result['overall']['accuracy']:.3f} "
            f"| {' '.join(parts)} | arith L1 {arith_l1:.3f} | loss {result['heldout_loss']:.3f}")


def scored_examples(preset, split: str) -> list:
    """The D6 held-out tasks, or as many tasks of the selection split (what tuning may look at)."""
    if split == "heldout":
        return heldout_examples(preset)
    data = preset.data
    return load_mixture(source_configs(preset), data.seed, n_examples=data.heldout_examples, split="selection",
                        kinds=data.kinds, max_level=data.max_level)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke preset, 10 and 20 s budgets")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--set", action="append", default=[], help="preset override, as agent-forge --set")
    parser.add_argument("--budgets", default="120,480")
    parser.add_argument("--contenders", nargs="+", default=["ours:muon:full", "llama:adamw:full:3e-3"])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--split", choices=("heldout", "selection"), default="heldout",
                        help="score on the D6 held-out set (report) or the selection split (tuning)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    preset = load_config("smoke" if args.quick else args.preset, overrides=args.set)
    budgets = [10, 20] if args.quick else [int(b) for b in args.budgets.split(",")]
    started = time.perf_counter()
    tokenizer = build_tokenizer(preset)
    heldout = HeldoutSet.build(tokenizer, scored_examples(preset, args.split), preset.data.seq_len,
                               max_lm_sequences=preset.data.heldout_lm_sequences)
    examples = training_examples(preset, preset.data.train_examples, preset.data.seed)  # the preset's mix
    data = LabelledData(tokenizer, examples, preset, {c.split(":")[2] if c.count(":") > 1 else "full"
                                                      for c in args.contenders})
    print(f"data ready in {time.perf_counter() - started:.1f} s: {len(examples)} training examples, "
          f"{len(data)} rows, {heldout.n_examples} scored tasks ({args.split} split)", flush=True)
    bf16 = cpu_has_bf16()
    report = {"machine": platform.processor() or platform.machine(), "threads": args.threads, "bf16": bf16,
              "split": args.split, "preset": args.preset, "overrides": args.set,
              "heldout_tasks": heldout.n_examples, "runs": {}}
    for seed in (int(s) for s in args.seeds.split(",")):
        contenders = [make_contender(spec, preset, seed) for spec in args.contenders]
        for contender in contenders:
            print(f"{contender.label}: {parameter_count(contender.model):,} parameters", flush=True)
        race(contenders, data, budgets, heldout, bf16)
        report["runs"].update({c.label: {"parameters": parameter_count(c.model), "results": c.results}
                               for c in contenders})
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
