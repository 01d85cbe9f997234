"""Phase 5, Forge (D5): curriculum training of the ternary model at the edge of its ability.

Recipe: load the Phase 4 model with its BitLinear layers (training stays quantization-aware: the
straight-through estimator updates full-precision shadow weights, the forward is ternary); measure it
(D6) and its accuracy per difficulty level on a curriculum evaluation set (held-out split, its own seed);
train with the Phase 5 MuonGrokfast preset (Grokfast switchable by ``forge.grokfast``, both learning
rates times ``forge.lr_scale``) on batches of the scheduler's current level, which moves up/down with
held-out accuracy at that level every ``eval_interval`` steps, with dream cycles replaying earlier levels
every ``dream_every`` steps; measure again. Levels come from the configured data (builtin generator
levels; real sources at the levels their adapters give): a level without training rows or evaluation
examples is left out of the range.

The output "forged" is packed into Phase 4's format (same block type, same storage precision); the
storage precision is absorbed first and a copy rebuilt from the packed file alone must give identical
logits, so the model stays exactly ternary and packable.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent_forge.config.schema import ForgeSection
from agent_forge.data.dataset import PackedDataset
from agent_forge.data.sources import load_mixture, source_configs
from agent_forge.data.tasks import TaskExample
from agent_forge.errors import ForgeError, HandoffError
from agent_forge.eval.heldout import HeldoutSet, answers_correct, heldout_loss
from agent_forge.model_io import bitlinear_config_of, bitlinear_meta, load_model, packed_writer
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import (
    TOKENS_PER_EXAMPLE,
    SessionData,
    eval_record,
    input_pack_config,
    lm_step,
    pack_output,
    packed_dataset,
    packed_inference_latency_ms,
    parameter_count,
    record_metrics,
    session_data,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.quant.packed_io import PackedSaveConfig
from agent_forge.train.curriculum import CurriculumConfig, CurriculumLoop, CurriculumScheduler
from agent_forge.train.distributed import init_from_env, wrap_ddp
from agent_forge.train.loop import StepOutput
from agent_forge.train.precision import resolve_device, use_bf16

TRAIN_SEED = 501
EVAL_SEED = 502
MIN_EVAL_EXAMPLES = 4




class CurriculumDataError(ForgeError):
    """The configured data cannot feed the curriculum's first level."""


@dataclass
class LevelData:
    """Per level: rank-sharded training batches and a held-out accuracy set."""

    train: dict[int, PackedDataset]
    evals: dict[int, HeldoutSet]

    @property
    def levels(self) -> list[int]:
        return sorted(self.evals)


def _by_level(examples: list[TaskExample]) -> dict[int, list[TaskExample]]:
    groups: dict[int, list[TaskExample]] = defaultdict(list)
    for example in examples:
        groups[example.level].append(example)
    return groups


def level_data(ctx: PhaseContext, section: ForgeSection) -> LevelData:
    """Training and evaluation examples of every level from min_level up to the last one both can feed."""
    cfg, tokenizer = ctx.config, session_data(ctx).tokenizer
    batch, n_levels = section.train.batch_size, section.max_level
    wanted = section.steps * batch * cfg.data.seq_len // TOKENS_PER_EXAMPLE
    n_train = min(cfg.data.train_examples * n_levels, max(wanted, batch * 8 * n_levels))
    mix = {"kinds": cfg.data.kinds, "max_level": section.max_level}
    train = _by_level(load_mixture(source_configs(cfg), cfg.data.seed + TRAIN_SEED, n_examples=n_train,
                                   split="train", **mix))
    evals = _by_level(load_mixture(source_configs(cfg), cfg.data.seed + EVAL_SEED, split="heldout",
                                   n_examples=section.eval_examples * n_levels, **mix))
    data = LevelData({}, {})
    for level in range(section.min_level, section.max_level + 1):
        held = HeldoutSet.build(tokenizer, evals.get(level, [])[: section.eval_examples], cfg.data.seq_len,
                                max_lm_sequences=1)
        try:
            seed = cfg.data.seed + TRAIN_SEED + level
            dataset = packed_dataset(ctx, tokenizer, train.get(level, []), batch, seed)
        except ValueError:
            break
        if held.n_examples < MIN_EVAL_EXAMPLES:
            break
        data.train[level], data.evals[level] = dataset, held
    if not data.evals:
        raise CurriculumDataError(f"no training rows or held-out examples at level {section.min_level}",
                                  "add a builtin source or lower forge.min_level")
    return data


def level_accuracy(model: nn.Module, held: HeldoutSet) -> float:
    correct = answers_correct(model, held)
    return sum(correct) / len(correct)


@dataclass(kw_only=True)
class ForgeRun(PhaseRun):
    data: SessionData
    device: torch.device
    model: nn.Module
    levels: list[int] = field(default_factory=list)
    accuracy_before: dict[int, float] = field(default_factory=dict)
    accuracy_after: dict[int, float] = field(default_factory=dict)
    scheduler: CurriculumScheduler | None = None
    result: Any = None  # the curriculum loop's LoopResult
    loss_unpacked: float = 0.0
    pack_config: PackedSaveConfig | None = None
    packed: Path | None = None
    gap: float = 0.0


class ForgePhase(Phase):
    """Curriculum QAT of the ternary model with dream replay; stays packable into Phase 4's format."""

    name = "forge"

    def validate_input(self, ctx: PhaseContext, inputs: list[ModelRef]) -> tuple[bool, str]:
        ok, reason = super().validate_input(ctx, inputs)
        if ok and not inputs[0].metadata.get("bitlinear"):
            return False, "forge expects the ternary model of Phase 4 (metadata 'bitlinear')"
        return ok, reason

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> ForgeRun:
        ok, reason = self.validate_input(ctx, inputs)
        if not ok:
            raise HandoffError(reason, "run Phase 4 (bitnet) on the model first")
        data = session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        init_from_env(device)
        model = load_model(inputs[0]).to(device)
        return ForgeRun(inputs=inputs, data=data, device=device, model=model)

    def measure_before(self, ctx: PhaseContext, run: ForgeRun) -> EvalRecord:
        before = eval_record(run.model, run.data.heldout, run.inputs[0].metadata.get("size_mb"), latency=False)
        before.latency_ms = packed_inference_latency_ms(run.model)
        return before

    def work(self, ctx: PhaseContext, run: ForgeRun) -> None:
        """Curriculum QAT with dream replay, accuracy per level before and after, then the packed file."""
        section: ForgeSection = ctx.phase_config
        model, data = run.model, run.data
        levels = level_data(ctx, section)
        run.levels = levels.levels

        def measure(wanted: list[int]) -> dict[int, float]:
            return {level: level_accuracy(model, levels.evals[level]) for level in wanted}

        run.accuracy_before = measure(levels.levels)
        run.scheduler = CurriculumScheduler(CurriculumConfig(
            min_level=section.min_level, max_level=levels.levels[-1], band_up=section.band_up,
            band_down=section.band_down, eval_interval=section.eval_interval, dream_every=section.dream_every,
            dream_steps=section.dream_steps))
        run.result = train_curriculum(ctx, model, section, levels, run.scheduler, measure, run.device)
        run.scheduler.close_dream(measure)
        _log_dreams(ctx, run.scheduler)
        run.accuracy_after = measure(levels.levels)
        run.loss_unpacked = heldout_loss(model, data.heldout)
        run.pack_config = input_pack_config(run.inputs[0])
        run.packed, run.gap = pack_output(ctx, model, run.pack_config, data.heldout, "forged")

    def measure_after(self, ctx: PhaseContext, run: ForgeRun) -> EvalRecord:
        after = eval_record(run.model, run.data.heldout, run.packed.stat().st_size / 1e6, latency=False)
        after.latency_ms = packed_inference_latency_ms(run.model)
        return after

    def save(self, ctx: PhaseContext, run: ForgeRun) -> PhaseResult:
        section: ForgeSection = ctx.phase_config
        model, packed, scheduler, after, result = run.model, run.packed, run.scheduler, run.after, run.result
        metrics = {
            **record_metrics("before", run.before), **record_metrics("after", after),
            **_curriculum_metrics(scheduler, run.accuracy_before, run.accuracy_after),
            "grokfast": int(section.grokfast),
            "train/final_loss": result.losses[-1] if result.losses else 0.0,
            "train/recoveries": result.recoveries, "packed/logits_max_abs_diff": run.gap,
            "packed/size_mb": packed.stat().st_size / 1e6,
            "packed/storage_rounding_loss_change": after.loss - run.loss_unpacked,
            "phase/duration_seconds": run.seconds,
        }
        metadata = {
            "bitlinear": bitlinear_meta(model, bitlinear_config_of(run.inputs[0])),
            "highest_level": scheduler.highest,
            "final_level": scheduler.level, "size_mb": packed.stat().st_size / 1e6,
            "packed_file": packed.name,
            "pack_format": run.pack_config.ternary_format, "grokfast": section.grokfast,
            "accuracy_by_level_before": _str_keys(run.accuracy_before),
            "accuracy_by_level_after": _str_keys(run.accuracy_after),
            "perplexity": after.perplexity, "accuracy": after.accuracy,
        }
        ref = ctx.save_model("forged", packed_writer(model, run.data.tokenizer, packed), metadata, metrics,
                             parameters=parameter_count(model), parents=[run.inputs[0].model_id])
        shutil.rmtree(packed.parent, ignore_errors=True)
        return PhaseResult(True, self.name, [ref], metrics, duration_seconds=run.seconds,
                           before=run.before, after=after)


def train_curriculum(ctx: PhaseContext, model: nn.Module, section: ForgeSection, levels: LevelData,
                     scheduler: CurriculumScheduler, measure: Any, device: torch.device) -> Any:
    """Quantization-aware training on the scheduler's level, through a checkpointed CurriculumLoop."""

    def batch_fn(position: int) -> dict[str, torch.Tensor]:
        level, dream = scheduler.batch_level(position, measure)
        rows = levels.train[level].batch(position)
        ids, labels = (rows["input_ids"], rows["labels"]) if isinstance(rows, dict) else (rows, rows)
        return {"ids": ids, "labels": labels, "level": torch.full((len(ids),), float(level)),
                "dream": torch.full((len(ids),), float(dream))}

    def step_fn(net: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
        out = lm_step(net, {"input_ids": batch["ids"], "labels": batch["labels"]})
        out.metrics.update(level=float(batch["level"][0]), dream=float(batch["dream"][0]))
        return out

    def eval_fn(net: nn.Module) -> dict[str, float]:
        accuracy = level_accuracy(net, levels.evals[scheduler.level])
        level = scheduler.update(loop.state.step, accuracy)
        return {"level_accuracy": accuracy, "level": float(level), "highest_level": float(scheduler.highest)}

    optimizer = build_optimizer(model, MuGrokConfig.from_phase("5").scaled(section.lr_scale,
                                                                          grokfast=section.grokfast))
    loop = CurriculumLoop(
        curriculum=scheduler, ctx=ctx, run_name="curriculum", model=wrap_ddp(model, device),
        optimizer=optimizer, batch_fn=batch_fn, step_fn=step_fn, total_steps=section.steps,
        train=section.train.model_copy(update={"eval_every": section.eval_interval}),
        config=section.model_dump(), eval_fn=eval_fn, device=device,
        bf16=use_bf16(section.train.bf16, device))
    return loop.run()


def _str_keys(values: dict[int, float]) -> dict[str, float]:
    return {str(k): v for k, v in values.items()}


def _log_dreams(ctx: PhaseContext, scheduler: CurriculumScheduler) -> None:
    for dream in scheduler.dreams:
        levels = [lv for lv in dream["after"] if lv in dream["before"]]
        if levels:
            before = sum(dream["before"][lv] for lv in levels) / len(levels)
            after = sum(dream["after"][lv] for lv in levels) / len(levels)
            figures = {"dream/accuracy_before": before, "dream/accuracy_after": after}
            ctx.log(dream["start"], figures, "dreams")


def _curriculum_metrics(scheduler: CurriculumScheduler, before: dict[int, float],
                        after: dict[int, float]) -> dict[str, float]:
    figures: dict[str, float] = {f"level_accuracy_before/{lv}": acc for lv, acc in before.items()}
    figures.update({f"level_accuracy_after/{lv}": acc for lv, acc in after.items()})
    figures.update({f"curriculum/steps_level_{lv}": n for lv, n in sorted(scheduler.steps_per_level.items())})
    figures.update({f"curriculum/dream_steps_level_{lv}": n
                    for lv, n in sorted(scheduler.dream_steps_per_level.items())})
    moves = sum(1 for h in scheduler.history if h["new_level"] != h["level"])
    figures.update({"curriculum/highest_level": scheduler.highest, "curriculum/final_level": scheduler.level,
                    "curriculum/level_moves": moves, "curriculum/evaluations": len(scheduler.history),
                    "dream/cycles": len(scheduler.dreams)})
    effect = scheduler.dream_effect()
    if effect is not None:
        figures["dream/effect"] = effect
    return figures
