"""Phase 4, BitNet b1.58: ternary weights and 8-bit activations, quality recovered by QAT.

Recipe: measure the Phase 3 model (D6); swap every linear except the kept ones for a ``BitLinear`` (the
head tied to the embedding is never swapped); calibrate on training samples (per-layer output error,
loss in full precision and ternary); evaluate the quantized model; when quality fell by more than
``finetune_trigger_drop``, fine-tune with the Phase 4 MuonGrokfast preset (straight-through estimator on
full-precision shadow weights), the blend rising from full precision to ternary over the first
``ramp_fraction`` of the steps when ``ramp`` is on. ``compare_ramp`` also trains the other schedule
from the same start and records both recoveries.

The output "ternary" keeps the shadow weights (Phase 5 continues QAT from them) and the packed TQ1_0 /
TQ2_0 file. The storage precision of the file's other tensors (fp16, or int8 embedding rows) is absorbed
into the model before the final evaluation, so the registered model, its checkpoint and the packed file
are one model: a copy rebuilt from the packed file alone must give identical logits (the phase fails
otherwise).

Quality drop (the QAT trigger) is the larger of the relative fall of held-out accuracy and the relative
rise of held-out perplexity. Accuracy counts only when the input model answers at least
``MIN_CORRECT`` held-out examples right: below that, accuracy ratios are sampling noise (small models
often score ~0), while perplexity always measures. ``accuracy_retention`` is accuracy after / before on
the same condition, otherwise perplexity before / after ("perplexity retention"); metadata names the basis.
The D6 ``after.latency_ms`` is the decode latency of the packed integer path (how the ternary model is
run); the BitLinear simulation's own latency is ``performance/bitlinear_latency_ms``.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.baking.loss import token_kl
from agent_forge.config.schema import BitNetSection
from agent_forge.data.dataset import IGNORE_LABEL, encode_examples, pack_tokens
from agent_forge.data.sources import training_examples
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.heldout import HeldoutSet, heldout_loss
from agent_forge.model_io import bitlinear_meta, load_model, pack_exactly, packed_file_name, packed_writer
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import (
    TOKENS_PER_EXAMPLE,
    SessionData,
    add_think_record,
    decode_latency_ms,
    eval_record,
    frozen_copy,
    lm_step,
    objective_figures,
    packed_dataset,
    packed_inference_model,
    parameter_count,
    record_metrics,
    session_data,
    think_metrics,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.quant.bitlinear import BitLinear, BitLinearConfig, replace_linears, set_ramp
from agent_forge.quant.calibration import CalibrationReport, calibrate
from agent_forge.quant.packed_io import PackedSaveConfig, packed_size_breakdown
from agent_forge.train.loop import StepOutput, TrainLoop
from agent_forge.train.precision import resolve_device, use_bf16

MIN_CORRECT = 10
CALIBRATION_SEED = 401
QAT_SEED = 402

@dataclass
class QatOutcome:
    """One fine-tuning schedule: its final held-out record and how many steps it ran."""

    ramp: bool
    record: EvalRecord
    steps: int
    final_loss: float


def packed_save_config(section: BitNetSection) -> PackedSaveConfig:
    """Phase 4's file format (phases 5 and 6 read it from the packed file and pack into the same)."""
    return PackedSaveConfig(ternary_format=section.pack_format, float_dtype="float16",
                            int8_embeddings=section.embedding_bits == 8,
                            int4_embeddings=section.embedding_bits == 4)


def quality_drop(before: EvalRecord, after: EvalRecord, n_examples: int) -> float:
    """Relative perplexity rise, or relative accuracy fall when accuracy is measurable: the larger."""
    drop = (after.perplexity - before.perplexity) / before.perplexity
    if _accuracy_counts(before, n_examples):
        drop = max(drop, (before.accuracy - after.accuracy) / before.accuracy)
    return float(drop)


def accuracy_retention(before: EvalRecord, after: EvalRecord, n_examples: int) -> tuple[float, str]:
    """``after/before`` accuracy when the input answers >= MIN_CORRECT examples, else perplexity retention."""
    if _accuracy_counts(before, n_examples):
        return after.accuracy / before.accuracy, "accuracy"
    return before.perplexity / after.perplexity, "perplexity"


def _accuracy_counts(record: EvalRecord, n_examples: int) -> bool:
    return record.accuracy is not None and record.accuracy * n_examples >= MIN_CORRECT


def recovery_percent(before: float, quantized: float, recovered: float) -> float:
    """Share of the perplexity lost to quantization that fine-tuning won back (100 = all of it)."""
    lost = quantized - before
    return 100.0 * (quantized - recovered) / lost if lost > 0 else 0.0


def calibration_batches(ctx: PhaseContext, tokenizer: ForgeTokenizer,
                        section: BitNetSection) -> list[torch.Tensor]:
    """``calibration_samples`` training examples packed into rows (never a held-out example)."""
    seed = ctx.config.data.seed + CALIBRATION_SEED
    examples = training_examples(ctx.config, section.calibration_samples, seed)
    tokens = encode_examples(tokenizer, examples)
    rows = pack_tokens(tokens, ctx.config.data.seq_len)
    if len(rows) == 0:
        rows = torch.tensor([[t for seq in tokens for t in seq]], dtype=torch.long)
    return list(rows.split(section.train.batch_size))


def _module_bytes(model: nn.Module) -> int:
    """Bytes of the unique parameters and buffers (tied tensors once)."""
    seen: dict[int, int] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        seen[tensor.data_ptr()] = tensor.numel() * tensor.element_size()
    return sum(seen.values())


@dataclass(kw_only=True)
class BitNetRun(PhaseRun):
    data: SessionData
    device: torch.device
    work_dir: Path
    model: nn.Module
    fp32_bytes: int
    fp32_memory: int
    bit_config: BitLinearConfig | None = None
    replaced: list[str] = field(default_factory=list)
    calib: CalibrationReport | None = None
    calib_seconds: float = 0.0
    quantized: EvalRecord | None = None
    drop: float = 0.0
    outcomes: list[QatOutcome] = field(default_factory=list)
    packed: Path | None = None
    gap: float = 0.0
    think: dict[str, float] = field(default_factory=dict)
    speed: dict[str, float] = field(default_factory=dict)


class BitNetPhase(Phase):
    """Ternary quantization with calibration, QAT recovery and a packed, exactly reloadable file."""

    name = "bitnet"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> BitNetRun:
        data = session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        work = ctx.phase_dir / "work"
        model = load_model(inputs[0]).to(device)
        return BitNetRun(inputs=inputs, data=data, device=device, work_dir=work, model=model,
                         fp32_bytes=_fp32_file_bytes(model, work / "fp32"), fp32_memory=_module_bytes(model))

    def measure_before(self, ctx: PhaseContext, run: BitNetRun) -> EvalRecord:
        return eval_record(run.model, run.data.heldout,
                           run.inputs[0].size_mb or run.fp32_bytes / 1e6)  # the input's one size

    def work(self, ctx: PhaseContext, run: BitNetRun) -> None:
        """Ternary layers, calibration, QAT when quality dropped, and the packed file (checked exact)."""
        section: BitNetSection = ctx.phase_config
        data, device, model = run.data, run.device, run.model
        run.bit_config = BitLinearConfig(granularity=section.scale)
        teacher = frozen_copy(model) if section.distill_weight > 0 else None  # the fp model, before replacement
        run.replaced = replace_linears(model, keep=set(section.keep), config=run.bit_config)
        calib_start = time.perf_counter()
        run.calib = calibrate(model, [b.to(device) for b in calibration_batches(ctx, data.tokenizer, section)],
                              lambda m, b: lm_step(m, b).loss)
        run.calib_seconds = time.perf_counter() - calib_start
        _log_calibration(ctx, run.calib)
        run.quantized = eval_record(model, data.heldout, None, latency=False)
        run.drop = quality_drop(run.before, run.quantized, data.heldout.n_examples)
        trigger = section.finetune_trigger_drop
        wanted = section.finetune_steps > 0 and (run.drop > trigger or trigger == 0.0)
        run.outcomes = self._finetune_all(ctx, model, data.heldout, section, device, teacher) if wanted else []
        del teacher
        run.packed = run.work_dir / packed_file_name(section.pack_format)
        run.gap = pack_exactly(model, run.packed, packed_save_config(section), data.heldout.lm_batches(2)[0][0],
                               "ternary")

    def measure_after(self, ctx: PhaseContext, run: BitNetRun) -> EvalRecord:
        after = eval_record(run.model, run.data.heldout, run.packed.stat().st_size / 1e6, latency=False)
        run.think = think_metrics(run.model, run.data, ctx.config)  # does ternary thinking keep Phase 3's?
        add_think_record(after, run.think)
        run.speed = _inference_figures(run.model, run.before, run.fp32_memory, run.device)
        after.latency_ms = run.speed.get("performance/packed_latency_ms")
        return after

    def save(self, ctx: PhaseContext, run: BitNetRun) -> PhaseResult:
        section: BitNetSection = ctx.phase_config
        before, after, quantized, model, packed = run.before, run.after, run.quantized, run.model, run.packed
        packed_bytes = packed.stat().st_size
        retention, basis = accuracy_retention(before, after, run.data.heldout.n_examples)
        metrics = {
            **record_metrics("before", before), **record_metrics("quantized", quantized),
            **record_metrics("after", after), **run.speed, **run.think,
            **_compression_metrics(model, run.replaced, run.fp32_bytes, packed, run.calib),
            **_quality_metrics(before, quantized, after, retention, basis, run.drop),
            **_qat_metrics(run.outcomes, section, before, quantized),
            "calibration/loss_full_precision": run.calib.loss_full_precision,
            "calibration/loss_ternary": run.calib.loss_ternary,
            "performance/calibration_time_seconds": run.calib_seconds, "packed/logits_max_abs_diff": run.gap,
        }
        metrics["phase/duration_seconds"] = run.seconds
        metrics["phase/success"] = 1
        metadata = {
            "bitlinear": bitlinear_meta(model, run.bit_config), "compression_ratio": run.fp32_bytes / packed_bytes,
            "accuracy_retention": retention, "accuracy_retention_basis": basis, "size_mb": packed_bytes / 1e6,
            "packed_file": packed.name, "pack_format": section.pack_format,
            "embedding_bits": section.embedding_bits, "finetuned": bool(run.outcomes),
            "perplexity": after.perplexity, "accuracy": after.accuracy,
        }
        ref = ctx.save_model("ternary", packed_writer(model, run.data.tokenizer, packed), metadata, metrics,
                             parameters=parameter_count(model), parents=[run.inputs[0].model_id])
        shutil.rmtree(run.work_dir, ignore_errors=True)
        return PhaseResult(True, self.name, [ref], metrics, duration_seconds=run.seconds,
                           before=before, after=after)

    def _finetune_all(self, ctx: PhaseContext, model: nn.Module, heldout: HeldoutSet, section: BitNetSection,
                      device: torch.device, teacher: nn.Module | None = None) -> list[QatOutcome]:
        """The configured schedule on ``model``; with ``compare_ramp`` the other one first on a copy."""
        outcomes = []
        if section.compare_ramp:
            other = copy.deepcopy(model)
            outcomes.append(finetune(ctx, other, heldout, section, device, use_ramp=not section.ramp,
                                     teacher=teacher))
            del other
        outcomes.append(finetune(ctx, model, heldout, section, device, use_ramp=section.ramp,
                                 full_eval=section.compare_ramp, teacher=teacher))
        return outcomes


def distilled_lm_step(model: nn.Module, teacher: nn.Module, batch: dict[str, torch.Tensor],
                      weight: float) -> StepOutput:
    """``lm_step``'s loss plus ``weight`` x KL(teacher || model) at every scored position: the fp model's
    whole next-token distribution is a target beside the data's one token (knowledge distillation, Hinton
    et al. 2015, here from the model's own fp copy into its ternary one)."""
    ids, labels = batch["input_ids"], batch["labels"]
    out = model(input_ids=ids, labels=labels, return_logits=True)  # a training step keeps none by default
    with torch.no_grad():
        teacher_logprobs = F.log_softmax(teacher(input_ids=ids).logits.float(), dim=-1)
    scored = torch.zeros_like(labels, dtype=torch.bool)
    scored[:, :-1] = labels[:, 1:] != IGNORE_LABEL  # position i predicts label i + 1 (the model shifts)
    distill = token_kl(teacher_logprobs, out.logits, scored)
    figures = {**objective_figures(out), "distill_kl": float(distill.detach())}
    return StepOutput(out.loss + weight * distill, figures)


def finetune(ctx: PhaseContext, model: nn.Module, heldout: HeldoutSet, section: BitNetSection,
             device: torch.device, use_ramp: bool, full_eval: bool = True,
             teacher: nn.Module | None = None) -> QatOutcome:
    """Quantization-aware fine-tuning through TrainLoop; the ramp is a pure function of the step.

    ``full_eval`` adds held-out accuracy to the final record (a comparison needs it; the phase's own
    final evaluation follows anyway, so a single schedule gets the loss only). With a ``teacher`` (the fp
    model) each step adds ``section.distill_weight`` x its KL to the data loss.
    """
    steps, batch_size = section.finetune_steps, section.train.batch_size
    seq_len = ctx.config.data.seq_len
    n_examples = min(ctx.config.data.train_examples,
                     max(batch_size * 8, steps * batch_size * seq_len // TOKENS_PER_EXAMPLE))
    seed = ctx.config.data.seed + QAT_SEED
    examples = training_examples(ctx.config, n_examples, seed)
    dataset = packed_dataset(ctx, session_data(ctx).tokenizer, examples, batch_size, seed,
                             prompt_loss_share=section.prompt_loss_share)
    ramp_steps = max(1, round(section.ramp_fraction * steps))

    def batch_fn(position: int) -> dict[str, torch.Tensor]:
        batch = dataset.batch(position)
        batch = batch if isinstance(batch, dict) else {"input_ids": batch, "labels": batch}
        ramp = min(1.0, position / ramp_steps) if use_ramp else 1.0
        return {**batch, "ramp": torch.full((len(batch["input_ids"]),), ramp)}

    def step_fn(net: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        set_ramp(net, float(batch["ramp"][0]))
        data = {"input_ids": batch["input_ids"], "labels": batch["labels"]}
        out = lm_step(net, data) if teacher is None else distilled_lm_step(net, teacher, data, section.distill_weight)
        out.metrics["ramp"] = float(batch["ramp"][0])
        return out

    def eval_fn(net: nn.Module) -> dict[str, float]:
        set_ramp(net, 1.0)
        return {"heldout_loss_ternary": heldout_loss(net, heldout)}

    run_name = "qat_ramp" if use_ramp else "qat_direct"
    optimizer = build_optimizer(model, MuGrokConfig.from_phase("4").scaled(section.lr_scale))
    loop = TrainLoop(ctx=ctx, run_name=run_name, model=model, optimizer=optimizer, batch_fn=batch_fn,
                     step_fn=step_fn, total_steps=steps, train=section.train,
                     config={**section.model_dump(), "schedule": run_name}, eval_fn=eval_fn, device=device,
                     bf16=use_bf16(section.train.bf16, device))
    result = loop.run()
    set_ramp(model, 1.0)
    model.eval()
    if full_eval:
        record = eval_record(model, heldout, None, latency=False)
    else:
        loss = heldout_loss(model, heldout)
        record = EvalRecord(perplexity=math.exp(loss), loss=loss)
    final_loss = result.losses[-1] if result.losses else float("nan")
    return QatOutcome(use_ramp, record, result.state.step, final_loss)


def _fp32_file_bytes(model: nn.Module, folder: Path) -> int:
    """Size of the model's fp32 safetensors file: the reference of the compression ratio."""
    model.save_pretrained(folder, safe_serialization=True)
    size = (folder / "model.safetensors").stat().st_size
    shutil.rmtree(folder, ignore_errors=True)
    return size


def _log_calibration(ctx: PhaseContext, calib: CalibrationReport) -> None:
    figures = {f"calibration/relative_error/{name}": s.relative_error for name, s in calib.layers.items()}
    figures.update({f"calibration/input_absmax/{name}": s.input_absmax for name, s in calib.layers.items()})
    ctx.log(0, figures, model="calibration")


def _inference_figures(model: nn.Module, before: EvalRecord, fp32_memory: int,
                       device: torch.device) -> dict[str, float]:
    """Decode latency and weight memory of the packed integer path (CPU), against the fp32 input."""
    packed = packed_inference_model(model)
    figures = {"performance/memory_reduction": fp32_memory / _module_bytes(packed),
               "performance/packed_memory_mb": _module_bytes(packed) / 1e6}
    latency = decode_latency_ms(packed)
    figures["performance/packed_latency_ms"] = latency
    figures["performance/bitlinear_latency_ms"] = decode_latency_ms(model)
    if device.type == "cpu" and before.latency_ms:
        figures["performance/inference_speedup"] = before.latency_ms / latency
    return figures


def _compression_metrics(model: nn.Module, replaced: list[str], fp32_bytes: int, packed: Path,
                         calib: CalibrationReport) -> dict[str, float]:
    kept = [n for n, m in model.named_modules()
            if isinstance(m, (nn.Linear, nn.Embedding)) and not isinstance(m, BitLinear)]
    sizes = packed_size_breakdown(packed)
    packed_bytes = packed.stat().st_size
    return {
        "compression/original_size_mb": fp32_bytes / 1e6,
        "compression/compressed_size_mb": packed_bytes / 1e6,
        "compression/compression_ratio": fp32_bytes / packed_bytes,
        "compression/layers_compressed": len(replaced), "compression/layers_preserved": len(kept),
        "compression/sparsity_ratio": calib.sparsity,
        **{f"packed/{kind}_bytes": value for kind, value in sizes.items()},
    }


def _quality_metrics(before: EvalRecord, quantized: EvalRecord, after: EvalRecord, retention: float,
                     basis: str, drop: float) -> dict[str, Any]:
    return {
        "quality/pre_compression_perplexity": before.perplexity,
        "quality/post_compression_perplexity": quantized.perplexity,
        "quality/perplexity_degradation_percent": 100.0 * (quantized.perplexity / before.perplexity - 1.0),
        "quality/post_finetuning_perplexity": after.perplexity,
        "quality/perplexity_recovery_percent": recovery_percent(before.perplexity, quantized.perplexity,
                                                                after.perplexity),
        "quality/final_perplexity_increase_percent": 100.0 * (after.perplexity / before.perplexity - 1.0),
        "quality/pre_accuracy": before.accuracy, "quality/quantized_accuracy": quantized.accuracy,
        "quality/post_accuracy": after.accuracy, "quality/accuracy_retention": retention,
        "quality/accuracy_retention_basis": basis, "quality/quality_drop": drop,
    }


def _qat_metrics(outcomes: list[QatOutcome], section: BitNetSection, before: EvalRecord,
                 quantized: EvalRecord) -> dict[str, Any]:
    figures: dict[str, Any] = {"qat/triggered": int(bool(outcomes)), "qat/ramp": int(section.ramp)}
    for outcome in outcomes:
        key = "ramp" if outcome.ramp else "direct"
        figures[f"qat/{key}_steps"] = outcome.steps
        figures[f"qat/{key}_final_train_loss"] = outcome.final_loss
        figures[f"qat/{key}_perplexity"] = outcome.record.perplexity
        if outcome.record.accuracy is not None:
            figures[f"qat/{key}_accuracy"] = outcome.record.accuracy
        figures[f"qat/{key}_recovery_percent"] = recovery_percent(
            before.perplexity, quantized.perplexity, outcome.record.perplexity)
    return figures
