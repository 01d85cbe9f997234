"""Phase 8 measured against the plain baselines, on the same model in the same run.

The model is a default run's Phase 7 output (``--session`` names the session folder: its ``config.yaml``,
``tokenizer/`` and ``phase7_edge/edge``), the one Phase 8 compresses; without ``--session`` a tiny model is
trained for a few steps first (``--quick``: the CI smoke of this script, whose figures mean little). Every
row is a whole model file, rebuilt from exactly what it stores and evaluated on the D6 held-out set
(perplexity, accuracy overall and per kind) and on the selection split (the split Phase 8's planner
decides on):

1. the baselines: the packed file (TQ1_0 ternary blocks + fp16 floats) through ``xz -9e``; the same with
   the large float tensors (the tied embedding) in GGUF Q4_0 blocks, through ``xz -9e``;
2. our lossless stage alone (entropy only) against ``xz -9e`` on the same bytes;
3. each lossy method on the embedding (usq at several grid steps; SeedLM; VPTQ with and without a residual
   codebook): the file's bytes, and its lossless stage against ``xz -9e`` over the very streams it coded
   (streams against streams: our container's header, which holds what rebuilds the model, is left out);
4. the planner as the preset sets it (Phase 8's own choice under its budget, decided on the selection
   split).

Ratios are against Q4_0 + xz in the same run: below 1 is smaller. A method "beats" the baseline when its file
is smaller and its D6 perplexity and every kind's accuracy are no worse than the baseline's.

    python benchmarks/compression.py --session /path/to/forge_workspace/sessions/<id> --json out.json
    python benchmarks/compression.py --quick
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml
from torch import Tensor

from agent_forge.config import load_config
from agent_forge.config.loader import validate_config
from agent_forge.config.schema import PipelineConfig
from agent_forge.data.dataset import PackedDataset
from agent_forge.data.sources import heldout_examples, load_mixture, source_configs, training_examples
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.heldout import HeldoutSet, evaluate
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import load_model
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import build_tokenizer, forge_config, lm_step
from agent_forge.phases.final import candidates, embedding_key, measure, token_importance, tools_probe
from agent_forge.quant.baselines import q4_0_file, stage_input, xz_9e_size
from agent_forge.quant.bitlinear import replace_linears
from agent_forge.quant.container import CompressionPlan, MethodSpec, compress_tensors, decode_container
from agent_forge.quant.model_codec import ModelCodecConfig, load_tensors_into, model_tensors
from agent_forge.quant.planner import PlannerConfig, classify_tensor, plan_compression
from agent_forge.quant.seedlm import SeedLMConfig
from agent_forge.quant.uniform import UniformConfig
from agent_forge.quant.vptq import VPTQConfig
from agent_forge.storage.artifacts import ModelRef


@dataclass
class Row:
    name: str
    bytes: int
    perplexity: float
    accuracy: dict[str, float]
    selection_perplexity: float
    selection_accuracy: dict[str, float]
    encode_s: float = 0.0
    lossless: dict[str, int] = field(default_factory=dict)  # ours against xz -9e on the same streams
    vs_q4_0: float = math.nan
    beats_q4_0: bool | None = None


def _quality(model: ForgeForCausalLM, held: HeldoutSet) -> tuple[float, dict[str, float]]:
    result = evaluate(model.eval(), held)
    return result.perplexity, {"overall": result.accuracy, **result.accuracy_by_kind}


class Bench:
    """One model's tensors, its two evaluation sets, and the rows measured so far."""

    def __init__(self, model: ForgeForCausalLM, heldout: HeldoutSet, selection: HeldoutSet):
        self.model, self.heldout, self.selection = model, heldout, selection
        self.tensors, self.layout = model_tensors(model, ModelCodecConfig("tq1_0", "float16"))
        self.skeleton = ForgeForCausalLM(model.config).eval()
        self.rows: list[Row] = []

    def rebuilt(self, tensors: Mapping[str, Tensor]) -> ForgeForCausalLM:
        return load_tensors_into(self.skeleton, tensors, self.layout)

    def add(self, name: str, nbytes: int, tensors: Mapping[str, Tensor], encode_s: float = 0.0,
            lossless: dict[str, int] | None = None) -> Row:
        model = self.rebuilt(tensors)
        ppl, acc = _quality(model, self.heldout)
        sel_ppl, sel_acc = _quality(model, self.selection)
        row = Row(name, nbytes, ppl, acc, sel_ppl, sel_acc, encode_s, lossless or {})
        self.rows.append(row)
        print(f"  {name:<44} {nbytes:>9} B  ppl {ppl:7.4f}  acc {_acc(acc)}  sel ppl {sel_ppl:7.4f}"
              f"  {_lossless(row.lossless)}", flush=True)
        return row

    def container(self, name: str, methods: dict[str, MethodSpec], importance: dict[str, Tensor]) -> Row:
        start = time.perf_counter()
        compressed = compress_tensors(self.tensors, CompressionPlan(methods), importance)
        seconds = time.perf_counter() - start
        streams = sum(item.stored_bytes for item in compressed.tensors.values())  # without the header
        lossless = {"ours": streams, "xz_9e": xz_9e_size(stage_input(compressed.tensors.values()))}
        return self.add(name, len(compressed.data), decode_container(compressed.data), seconds, lossless)


def _acc(acc: dict[str, float]) -> str:
    return " ".join(f"{k} {v:.3f}" for k, v in acc.items())


def _lossless(lossless: dict[str, int]) -> str:
    if not lossless:
        return ""
    ours, xz = lossless["ours"], lossless["xz_9e"]
    return f"lossless stage {ours} vs xz -9e {xz} ({ours / xz:.3f})"


def raw_bytes(tensors: Mapping[str, Tensor]) -> bytes:
    return b"".join(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in tensors.values())


def baseline_rows(bench: Bench, lossy: set[str]) -> Row:
    raw = raw_bytes(bench.tensors)
    bench.add("packed (TQ1_0 + fp16), no entropy stage", len(raw), bench.tensors)
    bench.add("packed + xz -9e", xz_9e_size(raw), bench.tensors)
    start = time.perf_counter()
    q4_bytes, q4_tensors = q4_0_file(bench.tensors, lossy)
    size = xz_9e_size(q4_bytes)
    return bench.add("Q4_0 embedding + xz -9e (baseline)", size, q4_tensors, time.perf_counter() - start)


def method_rows(bench: Bench, lossy: set[str], methods: list[MethodSpec], importance: dict[str, Tensor]) -> None:
    bench.container("ours, lossless (entropy only)", {}, importance)
    for spec in methods:
        bench.container(label(spec), dict.fromkeys(lossy, spec), importance)


def label(spec: MethodSpec) -> str:
    if isinstance(spec, UniformConfig):
        return f"usq step {spec.step} (k={spec.clusters}, e<={spec.max_exponent})"
    if isinstance(spec, VPTQConfig):
        residual = f"+{spec.residual}" if spec.residual else ""
        return f"vptq v={spec.vector} k={spec.codebook}{residual}"
    if isinstance(spec, SeedLMConfig):
        return f"seedlm K={spec.lfsr_bits} C={spec.block} P={spec.coeffs} Q={spec.coeff_bits}"
    return type(spec).__name__


def planner_row(bench: Bench, config: PipelineConfig, tokenizer: ForgeTokenizer,
                importance: dict[str, Tensor]) -> Row:
    """Phase 8's own choice: the preset's candidates and budget (its tools-mode kinds too), decided on the
    selection split."""
    section, probe = config.final, tools_probe(config, tokenizer)

    def measure_tensors(tensors: Mapping[str, Tensor]):
        return measure(bench.rebuilt(tensors), bench.selection, probe)

    start = time.perf_counter()
    plan = plan_compression(bench.tensors, measure_tensors, candidates(section),
                            PlannerConfig(max_increase=section.max_ppl_increase,
                                          max_accuracy_drop=section.max_accuracy_drop,
                                          accuracy_drop_z=section.accuracy_drop_z,
                                          min_lossy_numel=section.min_lossy_numel),
                            importance=importance, reference=measure(bench.model, bench.selection, probe),
                            metadata={"layout": bench.layout.to_json()})
    seconds = time.perf_counter() - start
    chosen = ", ".join(d.chosen.split(", clusters")[0] for d in plan.decisions if d.chosen != "raw") or "raw"
    lossless = {"ours": plan.stream_bytes, "xz_9e": xz_9e_size(stage_input(plan.compressed.tensors.values()))}
    return bench.add(f"Phase 8 planner: {chosen}", len(plan.compressed.data),
                     decode_container(plan.compressed.data), seconds, lossless)


def compare(rows: list[Row], baseline: Row) -> None:
    """Ratio against Q4_0 + xz, and whether the row is smaller at no worse quality on D6."""
    for row in rows:
        row.vs_q4_0 = row.bytes / baseline.bytes
        no_worse = row.perplexity <= baseline.perplexity and all(
            row.accuracy.get(k, -1.0) >= v for k, v in baseline.accuracy.items())
        row.beats_q4_0 = row is not baseline and row.bytes < baseline.bytes and no_worse


# ---- the model ----------------------------------------------------------------------------------------------

def session_model(folder: Path) -> tuple[PipelineConfig, ForgeTokenizer, ForgeForCausalLM]:
    """A finished session's config, tokenizer and Phase 7 model (read only)."""
    config = validate_config(yaml.safe_load((folder / "config.yaml").read_text()))
    edge = folder / "phase7_edge" / "edge"
    model = load_model(ModelRef("edge", edge, json.loads((edge / "metadata.json").read_text())))
    return config, ForgeTokenizer.load(folder / "tokenizer"), model


def trained_tiny(steps: int) -> tuple[PipelineConfig, ForgeTokenizer, ForgeForCausalLM]:
    """Without a session: the tiny model, ``steps`` fp32 steps then ``steps // 2`` ternary steps."""
    config = load_config("tiny")
    tokenizer = build_tokenizer(config)
    data = PackedDataset.from_examples(tokenizer, training_examples(config, 800, seed=0), config.data.seq_len, 16,
                                       seed=0)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    _train(model, data, steps, "1", config.cognate.lr_scale)
    replace_linears(model)
    _train(model, data, steps // 2, "4", config.bitnet.lr_scale)
    return config, tokenizer, model.eval()


def _train(model: ForgeForCausalLM, data: PackedDataset, steps: int, phase: str, lr_scale: float) -> None:
    optimizer = build_optimizer(model, MuGrokConfig.from_phase(phase).scaled(lr_scale))
    model.train()
    for step in range(steps):
        loss = lm_step(model, data.batch(step)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()


def evaluation_sets(config: PipelineConfig, tokenizer: ForgeTokenizer) -> tuple[HeldoutSet, HeldoutSet]:
    data = config.data
    heldout = HeldoutSet.build(tokenizer, heldout_examples(config), data.seq_len,
                               max_lm_sequences=data.heldout_lm_sequences)
    chosen = load_mixture(source_configs(config), data.seed, n_examples=data.selection_examples, split="selection",
                          kinds=data.kinds, max_level=data.max_level)
    return heldout, HeldoutSet.build(tokenizer, chosen, data.seq_len, max_lm_sequences=data.heldout_lm_sequences)


def lossy_methods(quick: bool, section_steps: list[float]) -> list[MethodSpec]:
    steps = sorted({*section_steps, 0.1, 0.15, 1.0}) if not quick else section_steps[:2]
    methods: list[MethodSpec] = [UniformConfig(step=s) for s in steps]
    if not quick:
        methods += [UniformConfig(step=0.3, max_exponent=0), UniformConfig(step=0.3, clusters=1)]
        methods += [VPTQConfig(codebook=256), VPTQConfig(codebook=256, residual=256)]
        methods += [SeedLMConfig(lfsr_bits=12), SeedLMConfig(lfsr_bits=16)]
    return methods


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--session", type=Path, help="a finished session folder (its Phase 7 model is used)")
    parser.add_argument("--quick", action="store_true", help="no session needed: a briefly trained tiny model")
    parser.add_argument("--train-steps", type=int, default=200, help="fp32 steps without --session")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every row to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    if args.session is not None:
        config, tokenizer, model = session_model(args.session)
    else:
        config, tokenizer, model = trained_tiny(20 if args.quick else args.train_steps)
    heldout, selection = evaluation_sets(config, tokenizer)
    bench = Bench(model, heldout, selection)
    lossy = {n for n, t in bench.tensors.items() if classify_tensor(n, t, config.final.min_lossy_numel) == "matrix"}
    counts = token_importance(config, tokenizer, config.final.importance_examples)
    importance = {embedding_key(model, bench.layout): counts} if counts is not None else {}
    print(f"model: {sum(p.numel() for p in model.parameters())} parameters; lossy tensors {sorted(lossy)}")
    baseline = baseline_rows(bench, lossy)
    method_rows(bench, lossy, lossy_methods(args.quick, config.final.usq_steps), importance)
    planner_row(bench, config, tokenizer, importance)
    compare(bench.rows, baseline)
    print("\nagainst Q4_0 + xz -9e (bytes ratio; beats = smaller at no worse D6 perplexity and accuracy per kind):")
    for row in bench.rows:
        print(f"  {row.name:<44} x{row.vs_q4_0:5.3f}  {'beats' if row.beats_q4_0 else ''}")
    print(f"({time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"rows": [asdict(r) for r in bench.rows], "args": {
            k: str(v) for k, v in vars(args).items()}}, indent=2))


if __name__ == "__main__":
    main()
