"""Phase 8 measured: bytes, ratio against fp32 and held-out quality at every compression stage.

Stages, each with its size, its ratio against the fp32 parameters and the held-out perplexity and accuracy
of the model rebuilt from exactly what that stage stores:

1. ``fp32``: the trained fp32 model;
2. ``ternary (in memory)``: the same model after BitNet conversion and a short QAT run (Phase 4's method);
3. ``ternary packed``: TQ1_0 blocks + fp16 for the remaining floats (Phase 4's file, without its header);
4. ``+ entropy``: that, entropy coded (zstd / rANS, the smaller per stream), nothing lossy added;
5. ``+ <method>``: one lossy method on the large fp tensors (the tied embedding/head), before and after
   entropy coding, for VPTQ (with and without a residual codebook) and SeedLM;
6. ``planner``: Phase 8's choice under the preset's quality budget (what ``FinalPhase`` writes).

The tiny model is trained for ``--train-steps`` fp32 steps and ``--qat-steps`` ternary steps first (at the
preset's Phase 1 and Phase 4 learning-rate scales and ramp setting), so the
perplexities mean something (a fresh model's are ~vocab size whatever is done to it). ``--spec25m`` adds
sizes for spec25m shapes with fresh weights (no quality: sizes only, VPTQ only, SeedLM's exhaustive search
over 12.6M embedding weights takes minutes).

    python benchmarks/compression.py                    # tiny, trained, all methods
    python benchmarks/compression.py --quick            # fewer steps, SeedLM at 10-bit seeds
    python benchmarks/compression.py --spec25m --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor

from agent_forge.config import load_config
from agent_forge.config.schema import PipelineConfig
from agent_forge.data.dataset import PackedDataset
from agent_forge.data.sources import heldout_examples, training_examples
from agent_forge.eval.heldout import HeldoutSet, evaluate, heldout_loss
from agent_forge.model import ForgeForCausalLM
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import build_tokenizer, forge_config, lm_step
from agent_forge.phases.final import candidates
from agent_forge.quant.bitlinear import replace_linears, set_ramp
from agent_forge.quant.container import (
    CompressionPlan,
    MethodSpec,
    compress_tensors,
    decode_container,
    describe,
)
from agent_forge.quant.model_codec import ModelCodecConfig, load_tensors_into, model_tensors
from agent_forge.quant.planner import PlannerConfig, classify_tensor, plan_compression
from agent_forge.quant.seedlm import SeedLMConfig
from agent_forge.quant.vptq import VPTQConfig


@dataclass
class Row:
    stage: str
    bytes: int
    ratio: float
    perplexity: float | None
    accuracy: float | None
    encode_s: float = 0.0
    decode_s: float = 0.0


def train(model: ForgeForCausalLM, data: PackedDataset, steps: int, phase: str, lr_scale: float = 1.0,
          ramp_steps: int = 0) -> float:
    """``steps`` optimizer steps of the model's own objective at the D11 preset of ``phase`` times the
    preset's ``lr_scale``; returns the last loss. With ``ramp_steps`` the BitLinear layers blend from full
    precision into ternary over those steps, as Phase 4 does with ``ramp: true``."""
    optimizer = build_optimizer(model, MuGrokConfig.from_phase(phase).scaled(lr_scale))
    model.train()
    loss = math.nan
    for step in range(steps):
        if ramp_steps:
            set_ramp(model, min(1.0, (step + 1) / ramp_steps))
        out = lm_step(model, data.batch(step))
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss = float(out.loss.detach())
    return loss


def quality(model: ForgeForCausalLM, heldout: HeldoutSet | None) -> tuple[float | None, float | None]:
    if heldout is None:
        return None, None
    result = evaluate(model.eval(), heldout)
    return result.perplexity, result.accuracy


class Bench:
    """The tensors of one ternary model and how to measure a container built from them."""

    def __init__(self, model: ForgeForCausalLM, heldout: HeldoutSet | None, fp32_bytes: int, level: int):
        self.model, self.heldout, self.fp32_bytes, self.level = model, heldout, fp32_bytes, level
        self.tensors, self.layout = model_tensors(model, ModelCodecConfig("tq1_0", "float16"))
        self.rows: list[Row] = []

    def rebuilt(self, tensors: Mapping[str, Tensor]) -> ForgeForCausalLM:
        return load_tensors_into(ForgeForCausalLM(self.model.config), tensors, self.layout).eval()

    def add(self, stage: str, nbytes: int, tensors: Mapping[str, Tensor] | None, enc: float = 0.0,
            dec: float = 0.0) -> None:
        ppl, acc = quality(self.rebuilt(tensors), self.heldout) if tensors is not None else (None, None)
        self.rows.append(Row(stage, nbytes, self.fp32_bytes / nbytes, ppl, acc, enc, dec))
        print(f"  {stage:<48} {nbytes:>10} B  x{self.fp32_bytes / nbytes:6.2f}  ppl {_fmt(ppl)}  acc {_fmt(acc)}"
              f"  enc {enc:.2f}s dec {dec:.2f}s", flush=True)

    def container(self, stage: str, methods: dict[str, MethodSpec]) -> None:
        """Encode under ``methods`` (others raw), then report the method's bytes and the file's bytes."""
        start = time.perf_counter()
        compressed = compress_tensors(self.tensors, CompressionPlan(methods, zstd_level=self.level))
        encode_s = time.perf_counter() - start
        start = time.perf_counter()
        decoded = decode_container(compressed.data)
        decode_s = time.perf_counter() - start
        if methods:
            packed = sum(item.packed_bytes for item in compressed.tensors.values())
            self.add(f"{stage} (before entropy)", packed, compressed.reconstruction)
        self.add(f"{stage} + entropy", len(compressed.data), decoded, encode_s, decode_s)


def _fmt(value: float | None) -> str:
    return "   n/a  " if value is None else f"{value:8.4g}"


def large_tensors(tensors: Mapping[str, Tensor]) -> list[str]:
    return [name for name, t in tensors.items() if classify_tensor(name, t) == "matrix"]


def label(spec: MethodSpec) -> str:
    if isinstance(spec, VPTQConfig):
        residual = f"+{spec.residual}" if spec.residual else ""
        return f"vptq(v={spec.vector}, k={spec.codebook}{residual})"
    if isinstance(spec, SeedLMConfig):
        return f"seedlm(K={spec.lfsr_bits}, C={spec.block}, P={spec.coeffs}, Q={spec.coeff_bits})"
    return describe(spec)


def method_rows(bench: Bench, methods: list[MethodSpec]) -> None:
    names = large_tensors(bench.tensors)
    for spec in methods:
        bench.container(f"+ {label(spec)}", dict.fromkeys(names, spec))


def planner_row(bench: Bench, config: PipelineConfig) -> None:
    section = config.final
    skeleton = ForgeForCausalLM(bench.model.config).eval()
    evaluate_loss: Callable[[Mapping[str, Tensor]], float] = lambda t: heldout_loss(  # noqa: E731
        load_tensors_into(skeleton, t, bench.layout), bench.heldout)
    start = time.perf_counter()
    plan = plan_compression(bench.tensors, evaluate_loss, candidates(section),
                            PlannerConfig(max_increase=section.max_ppl_increase, zstd_level=bench.level),
                            reference=heldout_loss(bench.model, bench.heldout),
                            metadata={"layout": bench.layout.to_json()})
    seconds = time.perf_counter() - start
    chosen = {d.name: d.chosen.split("(")[0] for d in plan.decisions if d.chosen != "raw"}
    bench.add(f"planner (<= +{section.max_ppl_increase:.0%} ppl) {chosen}", len(plan.compressed.data),
              decode_container(plan.compressed.data), seconds, 0.0)


def tiny_session(config: PipelineConfig, args: argparse.Namespace) -> tuple[ForgeForCausalLM, HeldoutSet, Bench]:
    tokenizer = build_tokenizer(config)
    heldout = HeldoutSet.build(tokenizer, heldout_examples(config), config.data.seq_len,
                               max_lm_sequences=config.data.heldout_lm_sequences)
    examples = training_examples(config, args.examples, seed=config.data.seed)
    data = PackedDataset.from_examples(tokenizer, examples, config.data.seq_len, args.batch, seed=0)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    start = time.perf_counter()
    loss = train(model, data, args.train_steps, "1", config.cognate.lr_scale)
    print(f"fp32: {args.train_steps} steps, last loss {loss:.3f} ({time.perf_counter() - start:.0f}s)")
    fp32_bytes = sum(p.numel() for p in model.parameters()) * 4
    ppl, acc = quality(model, heldout)
    fp32_row = Row("fp32", fp32_bytes, 1.0, ppl, acc)
    replace_linears(model)
    ramp_steps = max(1, round(config.bitnet.ramp_fraction * args.qat_steps)) if config.bitnet.ramp else 0
    loss = train(model, data, args.qat_steps, "4", config.bitnet.lr_scale, ramp_steps)
    print(f"ternary QAT: {args.qat_steps} steps, last loss {loss:.3f}")
    bench = Bench(model, heldout, fp32_bytes, args.zstd_level)
    bench.rows.append(fp32_row)
    print(f"  {'fp32':<48} {fp32_bytes:>10} B  x  1.00  ppl {_fmt(ppl)}  acc {_fmt(acc)}")
    ppl, acc = quality(model, heldout)
    bench.rows.append(Row("ternary (in memory)", fp32_bytes, 1.0, ppl, acc))
    print(f"  {'ternary (in memory, fp32 shadow weights)':<48} {'':>10}    ppl {_fmt(ppl)}  acc {_fmt(acc)}")
    return model, heldout, bench


def stage_rows(bench: Bench, methods: list[MethodSpec]) -> None:
    raw = sum(t.numel() * t.element_size() for t in bench.tensors.values())
    bench.add("ternary packed (TQ1_0 + fp16)", raw, bench.tensors)
    bench.container("ternary packed", {})
    method_rows(bench, methods)


def spec25m_rows(level: int) -> list[Row]:
    """Sizes only: a fresh spec25m-shaped model through the same stages (VPTQ on the embedding)."""
    config = load_config("spec25m")
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    fp32_bytes = sum(p.numel() for p in model.parameters()) * 4
    replace_linears(model)
    bench = Bench(model.eval(), None, fp32_bytes, level)
    bench.rows.append(Row("fp32", fp32_bytes, 1.0, None, None))
    print(f"  {'fp32':<48} {fp32_bytes:>10} B  x  1.00")
    raw = sum(t.numel() * t.element_size() for t in bench.tensors.values())
    bench.add("ternary packed (TQ1_0 + fp16)", raw, None)
    for stage, methods in (("ternary packed", None), (f"+ {label(VPTQConfig())}", VPTQConfig())):
        start = time.perf_counter()
        spec = dict.fromkeys(large_tensors(bench.tensors), methods) if methods is not None else {}
        compressed = compress_tensors(bench.tensors, CompressionPlan(spec, zstd_level=level))
        bench.add(f"{stage} + entropy", len(compressed.data), None, time.perf_counter() - start)
    return bench.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and cheaper SeedLM, for CI")
    parser.add_argument("--train-steps", type=int, default=200)
    parser.add_argument("--qat-steps", type=int, default=80)
    parser.add_argument("--examples", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--zstd-level", type=int, default=19)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spec25m", action="store_true", help="also sizes for spec25m shapes")
    parser.add_argument("--json", type=Path, help="write every row to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.train_steps, args.qat_steps, args.examples = min(args.train_steps, 40), min(args.qat_steps, 10), 800
    config = load_config("tiny")
    print(f"tiny: {config.model.hidden_size}d x {config.model.num_layers} layers, vocab {config.model.vocab_size}")
    _, _, bench = tiny_session(config, args)
    seedlm_bits = (10,) if args.quick else (12, 16)
    methods: list[MethodSpec] = [VPTQConfig(codebook=256), VPTQConfig(codebook=256, residual=256)]
    methods += [SeedLMConfig(lfsr_bits=bits) for bits in seedlm_bits]
    stage_rows(bench, methods)
    planner_row(bench, config)
    results = {"tiny": [asdict(r) for r in bench.rows], "args": vars(args) | {"json": str(args.json)}}
    if args.spec25m:
        print("spec25m (fresh weights, sizes only):")
        results["spec25m"] = [asdict(r) for r in spec25m_rows(args.zstd_level)]
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
