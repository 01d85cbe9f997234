"""Phase 1 Cognate: train a shared trunk, then three specialists from it (D2).

The specialists share every shape and start from the trunk's weights; they differ only in non-shape
hyperparameters (ACT threshold, memory capacity, surprise/novelty weights) and in their data (order and
kind weights), so Phase 2 can merge them and use the trunk as the base for task arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from agent_forge.config.schema import CognateSection, SpecialistSection
from agent_forge.data.sources import training_examples
from agent_forge.eval.heldout import evaluate, evaluation_mode
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import model_writer
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import (
    SessionData,
    accuracy_metadata,
    eval_record,
    forge_config,
    fp32_size_mb,
    lm_step,
    packed_dataset,
    parameter_count,
    record_metrics,
    session_data,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.train.distributed import init_from_env, wrap_ddp
from agent_forge.train.loop import LoopResult, TrainLoop
from agent_forge.train.precision import resolve_device, use_bf16

EXAMPLE_TOKENS_ESTIMATE = 20  # builtin examples average ~46 tokens; a low guess errs toward more data


def optimizer_config(section: CognateSection, specialist: bool = False) -> MuGrokConfig:
    """The D11 Phase 1 preset, scaled by the preset's lr_scale (and for a specialist, which continues a
    trained trunk, by specialist_lr_scale too), Grokfast switchable."""
    scale = section.lr_scale * (section.specialist_lr_scale if specialist else 1.0)
    return MuGrokConfig.from_phase("1").scaled(scale, grokfast=section.grokfast)


def specialist_values(spec: SpecialistSection) -> dict[str, Any]:
    """The non-shape hyperparameters that make a specialist (D2)."""
    return {"act_threshold": spec.act_threshold, "mem_capacity": spec.mem_capacity,
            "surprise_weight": spec.surprise_weight, "novelty_weight": spec.novelty_weight}


@dataclass
class Specialist:
    """A trained, registered specialist and its held-out record."""

    ref: ModelRef
    record: EvalRecord


@dataclass(kw_only=True)
class CognateRun(PhaseRun):
    data: SessionData
    device: torch.device
    model: ForgeForCausalLM
    trunk_ref: ModelRef | None = None
    trunk_loss: float = 0.0
    specialists: list[Specialist] = field(default_factory=list)


class CognatePhase(Phase):
    """Trunk + three specialists of the TRM x Titans-MAG model."""

    name = "cognate"
    expected_inputs = 0

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> CognateRun:
        data = session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        init_from_env(device)
        torch.manual_seed(ctx.config.runtime.seed)
        model = ForgeForCausalLM(forge_config(ctx.config)).to(device)
        return CognateRun(inputs=inputs, data=data, device=device, model=model)

    def measure_before(self, ctx: PhaseContext, run: CognateRun) -> EvalRecord:
        return eval_record(run.model, run.data.heldout, fp32_size_mb(run.model))

    def work(self, ctx: PhaseContext, run: CognateRun) -> None:
        """The trunk (saved at once: it is every specialist's parent), then each specialist from it."""
        section: CognateSection = ctx.phase_config
        model = run.model
        trunk_loop = self._train(ctx, model, "trunk", section.trunk_steps, ctx.config.data.seed, None, trunk=True)
        run.trunk_loss = trunk_loop.losses[-1]
        run.trunk_ref = ctx.save_model("trunk", model_writer(model, run.data.tokenizer),
                                       {"role": "trunk", "final_loss": trunk_loop.losses[-1]},
                                       parameters=parameter_count(model), tags=["trunk"])
        trunk_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for spec in section.specialists:
            run.specialists.append(self._specialist(ctx, spec, trunk_state, run))

    def measure_after(self, ctx: PhaseContext, run: CognateRun) -> EvalRecord:
        """The best specialist's record (the lowest held-out loss)."""
        return min((s.record for s in run.specialists), key=lambda r: r.loss or float("inf"))

    def save(self, ctx: PhaseContext, run: CognateRun) -> PhaseResult:
        """The specialists were registered as each finished; the phase's metrics name every one."""
        refs = [s.ref for s in run.specialists]
        metrics = {**record_metrics("before", run.before), **record_metrics("after", run.after),
                   "trunk/final_train_loss": run.trunk_loss}
        for ref, record in zip(refs, (s.record for s in run.specialists), strict=True):
            metrics.update(record_metrics(ref.metadata["specialization"], record))
            metrics[f"{ref.metadata['specialization']}/loss_drop"] = ref.metadata["loss_drop"]
            metrics.update({f"{ref.metadata['specialization']}/{k}": v for k, v in ref.metadata["halting"].items()})
        return PhaseResult(True, self.name, refs, metrics, before=run.before, after=run.after,
                           duration_seconds=run.seconds)

    def _specialist(self, ctx: PhaseContext, spec: SpecialistSection, trunk_state: dict[str, torch.Tensor],
                    run: CognateRun) -> Specialist:
        """Start from the trunk, set the specialist's non-shape values, train on its own data mix, register."""
        section: CognateSection = ctx.phase_config
        data, before, trunk_ref = run.data, run.before, run.trunk_ref
        model = ForgeForCausalLM(forge_config(ctx.config, **specialist_values(spec))).to(run.device)
        model.load_state_dict(trunk_state)
        loop = self._train(ctx, model, spec.name, section.specialist_steps, spec.seed, spec.kind_weights,
                           trunk=False)
        record = eval_record(model, data.heldout, fp32_size_mb(model))
        drop = 1.0 - record.loss / before.loss
        halting = halting_figures(model, data.heldout)
        metadata = {"specialization": spec.name, "seed": spec.seed, "final_loss": record.loss,
                    "initial_loss": before.loss, "loss_drop": drop, "final_train_loss": loop.losses[-1],
                    "halting": halting,
                    "trunk_model_id": trunk_ref.model_id, "param_breakdown": model.param_breakdown(),
                    **accuracy_metadata(record), **specialist_values(spec)}
        ref = ctx.save_model(spec.name, model_writer(model, data.tokenizer), metadata,
                             metrics=record_metrics("heldout", record), parameters=parameter_count(model),
                             parents=[trunk_ref.model_id], tags=["specialist"])
        return Specialist(ref, record)

    def _train(self, ctx: PhaseContext, model: ForgeForCausalLM, run: str, steps: int, seed: int,
               kind_weights: dict[str, float] | None, trunk: bool) -> LoopResult:
        section: CognateSection = ctx.phase_config
        data = session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        # the trunk reads the whole configured set; a specialist's short run only what its steps can read
        count = (ctx.config.data.train_examples if trunk
                 else examples_needed(ctx.config, steps, section.train.batch_size))
        examples = training_examples(ctx.config, count, seed, kind_weights=kind_weights)
        dataset = packed_dataset(ctx, data.tokenizer, examples, section.train.batch_size, seed,
                                 prompt_loss_share=section.prompt_loss_share)
        optimizer = build_optimizer(model, optimizer_config(section, specialist=not trunk))
        # "phase1": the checkpoint's config key from before the sections took phase names (resume compares it)
        settings = {"run": run, "steps": steps, "seed": seed, "phase1": section.model_dump(mode="json"),
                    "model": ctx.config.model.model_dump(mode="json")}
        loop = TrainLoop(ctx=ctx, run_name=run, model=wrap_ddp(model, device), optimizer=optimizer,
                         batch_fn=dataset.batch, step_fn=lm_step, total_steps=steps, train=section.train,
                         config=settings, eval_fn=lambda m: _monitor_figures(m, data.selection), device=device,
                         bf16=use_bf16(section.train.bf16, device))
        result = loop.run()
        model.eval()
        return result


def examples_needed(config: Any, steps: int, batch_size: int) -> int:
    """Enough examples for one pass over ``steps`` batches (at most ``data.train_examples``), so a short
    specialist run does not pay for generating and tokenising a trunk-sized set."""
    per_row = -(-config.data.seq_len // EXAMPLE_TOKENS_ESTIMATE)  # ceil: an over-estimate of examples a row
    return min(config.data.train_examples, max(steps, 2) * batch_size * per_row)


def _monitor_figures(model: ForgeForCausalLM, selection: Any) -> dict[str, float]:
    """What the loop logs while training: measured on the selection split, never on the D6 set."""
    result = evaluate(model, selection)
    return {"loss": result.loss, "perplexity": result.perplexity, "accuracy": result.accuracy,
            "bits_per_byte": result.bits_per_byte}


def halting_figures(model: ForgeForCausalLM, heldout: Any) -> dict[str, float]:
    """Where the ACT head halts on the held-out text at the model's own threshold: the mean number of
    recursion steps and the share of positions halting at each step (shows it is neither always the first
    nor always the last)."""
    device = next(model.parameters()).device
    counts = torch.zeros(model.config.trm_t_max, dtype=torch.long)
    with evaluation_mode(model):
        for ids, mask, _targets in heldout.lm_batches(32):
            halt = model(ids.to(device), attention_mask=mask.to(device)).halt_steps
            counts += torch.bincount(halt[mask.to(device).bool()].cpu(), minlength=counts.numel())
    shares = counts.float() / counts.sum().clamp_min(1)
    steps = torch.arange(1, counts.numel() + 1, dtype=torch.float32)
    return {"mean_halt_steps": float((shares * steps).sum()),
            **{f"halt_share_step_{t + 1}": float(share) for t, share in enumerate(shares)}}
