"""Phase 3 Quiet-STaR: supervised thought training (thought SFT) first, then parallel thoughts trained with REINFORCE.

Step 1 fine-tunes the merged model on reasoning examples (seven strategies inside ``<think>``, built from
training-split tasks, plus a share of plain prompt->answer rows) with the D11 "3_thought_sft" optimizer, then
checks convergence: the share of held-out prompts where the model thinks in a well-formed block and
answers in the right format. Step 2 trains the model and a mixing head with Quiet-STaR (D11 "3_rl", KL to
the frozen thought-SFT model). The output "reasoner" keeps the thinking tokens (same tokenizer) and stores the
mixing head beside its weights (``mixing_head.safetensors``); its metadata carries the measured figures.
Memory overhead = (mixing head + the key/value cache of one thought stream) / the fp32 model, per thought.
"""

from __future__ import annotations

import functools
import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from agent_forge.config.schema import QuietStarSection
from agent_forge.data.dataset import PackedDataset, pack_rows
from agent_forge.data.sources import training_examples
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import load_model, write_model_folder
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import (
    SessionData,
    add_think_record,
    eval_record,
    fp32_size_mb,
    frozen_copy,
    lm_step,
    packed_dataset,
    parameter_count,
    record_metrics,
    session_data,
    think_metrics,
    thinking_kinds,
    tool_demos,
    training_style,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.reasoning.data import build_reasoning_examples, encode_reasoning, select_examples, training_rows
from agent_forge.reasoning.evaluation import ThinkingReport, evaluate_thinking
from agent_forge.reasoning.evidence import has_evidence
from agent_forge.reasoning.mixing import MixingHead
from agent_forge.reasoning.quietstar import QuietStarModel, QuietStarSettings, quietstar_figures
from agent_forge.reasoning.semantic import SentenceEmbedder
from agent_forge.reasoning.strategies import STRATEGY_NAMES
from agent_forge.reasoning.thoughts import sample_anchors
from agent_forge.train.distributed import init_from_env, world, wrap_ddp
from agent_forge.train.loop import StepOutput, TrainLoop
from agent_forge.train.precision import resolve_device, use_bf16

THINKING_TOKENS = (
    "<think>",
    "</think>",
    "<step>",
    "<reason>",
    "<mece>",
    "<falsify>",
    "<expert>",
    "<ortho>",
    "<doubt>",
    "<bayes>",
    "<domain>",
)
REPORT_FILE = "quietstar_report.json"
QS_EVAL_ROWS = 8
ANSWER_TOKENS = 16  # room after a thought for the cue, the answer and <eos>


def scaled(preset: str, scale: float) -> MuGrokConfig:
    return MuGrokConfig.from_phase(preset).scaled(scale)


class Stopwatch:
    """Seconds spent in each part of the phase, for the budget on ``tiny`` (``time/<part>_s``)."""

    def __init__(self) -> None:
        self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[f"time/{name}_s"] = now - self.last
        self.last = now

    def timed(self, name: str, fn: Any, *args: Any) -> Any:
        self.last = time.perf_counter()
        result = fn(*args)
        self.lap(name)
        return result


@dataclass(kw_only=True)
class QuietStarRun(PhaseRun):
    clock: Stopwatch
    data: SessionData
    device: torch.device
    model: ForgeForCausalLM
    initial: ThinkingReport | None = None
    sft_figures: dict[str, float] = field(default_factory=dict)
    after_sft: ThinkingReport | None = None
    policy: QuietStarModel | None = None
    rl_losses: list[float] = field(default_factory=list)
    final: ThinkingReport | None = None
    qs: dict[str, float] = field(default_factory=dict)
    think: dict[str, float] = field(default_factory=dict)


class QuietStarPhase(Phase):
    """Thought SFT, convergence check, Quiet-STaR RL, anti-theater evaluation."""

    name = "quietstar"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> QuietStarRun:
        clock = Stopwatch()
        data = session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        init_from_env(device)
        model = load_model(inputs[0]).to(device)
        return QuietStarRun(inputs=inputs, clock=clock, data=data, device=device, model=model)

    def measure_before(self, ctx: PhaseContext, run: QuietStarRun) -> EvalRecord:
        before = eval_record(run.model, run.data.heldout, fp32_size_mb(run.model))
        run.clock.lap("d6_before")
        return before

    def work(self, ctx: PhaseContext, run: QuietStarRun) -> None:
        """Thinking checks before, thought SFT, checks, Quiet-STaR RL, checks and the mixing head's figures."""
        section: QuietStarSection = ctx.phase_config
        data, device, model, clock = run.data, run.device, run.model, run.clock
        kinds = thinking_kinds(ctx.config)  # the thinking checks read the selection split, never D6
        tasks = [t for t in data.selection.examples if has_evidence(t) and t.kind in kinds][: section.eval_examples]
        check_thinking_tokens(data.tokenizer, model)
        embedder = SentenceEmbedder(device=device) if section.semantic else None
        think = functools.partial(
            evaluate_thinking,
            tokenizer=data.tokenizer,
            tasks=tasks,
            max_tokens=section.max_thought_tokens + ANSWER_TOKENS,  # the thought, then cue, answer and <eos>
            embedder=embedder,
            coherence_threshold=section.coherence_threshold,
        )
        run.initial = clock.timed("think_initial", think, model)
        # the lap and metric names keep "bake" (time/bake_s, bake/*, baked/*): stored sessions and charts use them
        run.sft_figures = clock.timed("bake", self._thought_sft, ctx, model, data.tokenizer, device)
        run.after_sft = clock.timed("think_baked", think, model)
        run.policy, run.rl_losses = clock.timed("quietstar_rl", self._quietstar, ctx, model, device)
        run.final = clock.timed("think_final", think, model)
        rows = self._qs_rows(data.heldout.lm_rows, device)
        run.qs = clock.timed("qs_eval", quietstar_figures, run.policy, rows, section.positions_per_seq, section.seed)
        run.qs["mixing_head_params"] = float(parameter_count(run.policy.mixer))

    def measure_after(self, ctx: PhaseContext, run: QuietStarRun) -> EvalRecord:
        after = eval_record(run.model, run.data.heldout, fp32_size_mb(run.model))
        run.clock.lap("d6_after")
        run.think = run.clock.timed("d6_think", think_metrics, run.model, run.data, ctx.config)
        add_think_record(after, run.think)
        return after

    def save(self, ctx: PhaseContext, run: QuietStarRun) -> PhaseResult:
        metrics = self._metrics(run.before, run.after, run.initial, run.after_sft, run.final, run.qs,
                                run.sft_figures, run.rl_losses, ctx.phase_config)
        metrics.update({**run.think, **run.clock.laps})
        metrics["phase/duration_seconds"] = run.seconds
        ref = self._save(ctx, run.model, run.policy.mixer, run.data.tokenizer, run.inputs[0], metrics, run.final)
        return PhaseResult(
            True,
            self.name,
            [ref],
            metrics,
            before=run.before,
            after=run.after,
            artifacts={
                "mixing_head": str(ref.path / "mixing_head.safetensors"),
                "report": str(ref.path / REPORT_FILE),
            },
            duration_seconds=run.seconds,
        )

    # ---- step 1: supervised thought training (thought SFT) --------------------------------------------
    def _thought_sft(
        self, ctx: PhaseContext, model: ForgeForCausalLM, tokenizer: ForgeTokenizer, device: torch.device
    ) -> dict[str, float]:
        section: QuietStarSection = ctx.phase_config
        lists, labels, counts = thought_sft_token_lists(ctx, tokenizer, section)
        rank, size = world()
        seq_len = ctx.config.data.seq_len
        rows, row_labels = pack_rows(lists, labels, seq_len, ctx.config.data.packing)
        dataset = PackedDataset(rows, section.train.batch_size, section.seed, rank, size, row_labels)
        # "phase3": the checkpoint's config key from before the sections took phase names (resume compares it)
        settings = {"run": "bake", "phase3": section.model_dump(mode="json"), "rows": len(dataset)}
        loop = TrainLoop(
            ctx=ctx,
            run_name="bake",  # the checkpoint folder and metric rows of sessions written before the rename
            model=wrap_ddp(model, device),
            optimizer=build_optimizer(model, scaled("3_thought_sft", section.thought_sft_lr_scale)),
            batch_fn=dataset.batch,
            step_fn=lm_step,
            total_steps=section.thought_sft_steps,
            train=section.train,
            config=settings,
            device=device,
            bf16=use_bf16(section.train.bf16, device),
        )
        result = loop.run()
        model.eval()
        return {
            **counts,
            "bake/first_loss": result.losses[0],
            "bake/final_loss": result.losses[-1],
            "bake/rows": float(len(dataset)),
        }

    # ---- step 2: Quiet-STaR -----------------------------------------------------------------------------
    def _quietstar(
        self, ctx: PhaseContext, model: ForgeForCausalLM, device: torch.device
    ) -> tuple[QuietStarModel, list[float]]:
        section: QuietStarSection = ctx.phase_config
        reference = frozen_copy(model)
        torch.manual_seed(section.seed)
        settings = QuietStarSettings(
            section.num_thoughts,
            section.thought_len,
            section.lookahead,
            section.kl_coeff,
            section.positive_only,
        )
        policy = QuietStarModel(model, MixingHead(model.config.hidden_size), settings).to(device)
        examples = training_examples(
            ctx.config, max(64, section.rl_batch_size * section.rl_steps * 2), section.seed + 1
        )
        tokenizer = session_data(ctx).tokenizer
        dataset = packed_dataset(ctx, tokenizer, examples, section.rl_batch_size, section.seed + 1, packing="concat")

        def batch_fn(position: int) -> dict[str, torch.Tensor]:
            ids = dataset.batch(position)
            generator = torch.Generator().manual_seed(section.seed * 1_000_003 + position)
            anchors = sample_anchors(
                ids.shape[1], ids.shape[0], section.positions_per_seq, section.lookahead, generator
            )
            seeds = torch.full((ids.shape[0],), section.seed * 1_000_003 + position, dtype=torch.long)
            return {"ids": ids, "anchors": anchors, "seed": seeds}

        def step_fn(module: torch.nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
            with torch.no_grad():
                reference_logits = reference(input_ids=batch["ids"], use_cache=False).logits
            loss, figures = module(batch["ids"], batch["anchors"], batch["seed"], reference_logits)
            return StepOutput(loss, figures)

        config = {"run": "quietstar", "phase3": section.model_dump(mode="json")}
        loop = TrainLoop(
            ctx=ctx,
            run_name="quietstar",
            model=wrap_ddp(policy, device),
            optimizer=build_optimizer(policy, scaled("3_rl", section.rl_lr_scale)),
            batch_fn=batch_fn,
            step_fn=step_fn,
            total_steps=section.rl_steps,
            train=section.train,
            config=config,
            device=device,
            bf16=use_bf16(section.train.bf16, device),
        )
        result = loop.run() if section.rl_steps else None
        policy.eval()
        return policy, (result.losses if result else [])

    @staticmethod
    def _qs_rows(rows: list[list[int]], device: torch.device) -> torch.Tensor:
        width = max(len(r) for r in rows)
        full = [r for r in rows if len(r) == width][:QS_EVAL_ROWS]
        return torch.tensor(full, dtype=torch.long, device=device)

    # ---- results ----------------------------------------------------------------------------------------
    @staticmethod
    def _metrics(
        before: Any,
        after: Any,
        initial: ThinkingReport,
        after_sft: ThinkingReport,
        final: ThinkingReport,
        qs: dict[str, float],
        sft_figures: dict[str, float],
        rl_losses: list[float],
        section: QuietStarSection,
    ) -> dict[str, Any]:
        metrics: dict[str, Any] = {
            **record_metrics("before", before),
            **record_metrics("after", after),
            **sft_figures,
        }
        for prefix, report in (("initial", initial), ("baked", after_sft)):
            metrics.update({f"{prefix}/{k}": v for k, v in report.metrics.items()})
        metrics.update({f"phase/{k}": v for k, v in final.metrics.items()})
        metrics.update({f"phase/{k}": v for k, v in qs.items()})
        model_mb = after.size_mb or 1.0
        per_thought_cache = final.metrics["stream_cache_mb"] / max(final.metrics["thoughts_generated"], 1.0)
        metrics["phase/memory_overhead"] = (qs["mixing_head_params"] * 4 / 1e6 + per_thought_cache) / model_mb
        metrics["convergence/validity_rate"] = after_sft.metrics["validity_rate"]
        metrics["convergence/threshold"] = section.convergence_threshold
        metrics["convergence/passed"] = float(after_sft.metrics["validity_rate"] >= section.convergence_threshold)
        if rl_losses:
            metrics["rl/first_loss"], metrics["rl/final_loss"] = rl_losses[0], rl_losses[-1]
        return metrics

    def _save(
        self,
        ctx: PhaseContext,
        model: ForgeForCausalLM,
        mixer: MixingHead,
        tokenizer: ForgeTokenizer,
        parent: ModelRef,
        metrics: dict[str, Any],
        final: ThinkingReport,
    ) -> ModelRef:
        figures = final.metrics
        metadata = {
            "coherence_score": float(figures["avg_coherence"]),
            "validity_rate": float(figures["validity_rate"]),
            "accuracy_with_thoughts": float(figures["accuracy_with_thoughts"]),
            "accuracy_without_thoughts": float(figures["accuracy_without_thoughts"]),
            "accuracy": float(metrics["after/accuracy"]),  # D6 held-out: what the min_accuracy hand-off reads
            "theater_detected": final.theater_detected,
            "convergence_validity_rate": float(metrics["convergence/validity_rate"]),
            "converged": bool(metrics["convergence/passed"]),
            "mixing_head": "mixing_head.safetensors",
            "thinking_tokens": list(THINKING_TOKENS),
            "qs_ll_gain": float(metrics["phase/qs_ll_gain"]),
            "param_breakdown": model.param_breakdown(),
        }
        samples = [
            {"thought": t, "valid": p.valid, "coherence": c.score}
            for t, p, c in list(zip(final.thoughts, final.parsed, final.coherence, strict=True))[:8]
        ]

        def write(folder: Path) -> None:
            write_model_folder(model, tokenizer, folder)
            mixer.save(folder)
            report = {
                "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float))},
                "samples": samples,
            }
            (folder / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))

        return ctx.save_model(
            "reasoner",
            write,
            metadata,
            metrics=metrics,
            parameters=parameter_count(model),
            parents=[parent.model_id],
            tags=["reasoner"],
        )


def check_thinking_tokens(tokenizer: ForgeTokenizer, model: ForgeForCausalLM) -> None:
    """The thinking tokens must exist in the tokenizer and inside the model's vocabulary (D3)."""
    for token in THINKING_TOKENS:
        index = tokenizer.special_id(token)
        if tokenizer.encode(token) != [index] or index >= model.config.vocab_size:
            raise ValueError(f"thinking token {token} is not a single in-vocabulary token")


def thought_sft_token_lists(
    ctx: PhaseContext, tokenizer: ForgeTokenizer, section: QuietStarSection
) -> tuple[list[list[int]], list[list[int]], dict[str, float]]:
    """Reasoning examples that fit one row, plus plain rows written as every phase's mix writes them (a
    ``data.persona_share`` under the persona prompt) and ``data.tool_demo_share`` more tool demonstrations,
    shuffled (all from the training split); returns token ids, labels and counts. Without the
    demonstrations this stage taught thoughts over calls: measured on a default-run model, prompted tool
    calls fell from 1.00 to 0.21 of arithmetic tasks."""
    seq_len = ctx.config.data.seq_len
    tasks = [t for t in training_examples(ctx.config, 2 * section.thought_sft_examples, section.seed)
             if t.kind in thinking_kinds(ctx.config)]
    reasoning = build_reasoning_examples(tasks, section.seed)
    encoded = encode_reasoning(tokenizer, reasoning)
    kept = select_examples(list(zip(reasoning, encoded, strict=True)), section.thought_sft_examples, seq_len)
    fitting = sum(len(e.tokens) <= seq_len for _, e in kept)
    if fitting < len(kept):
        ctx.logger.warning(
            "some reasoning examples are longer than a row and will be split",
            longer=len(kept) - fitting,
            seq_len=seq_len,
        )
    plain = training_examples(ctx.config, int(section.thought_sft_examples * section.plain_share), section.seed + 2)
    demos = tool_demos(ctx.config, round((len(kept) + len(plain)) * ctx.config.data.tool_demo_share), section.seed + 3)
    # plain rows and demonstrations keep their own labels (prompts and tool results unscored); thoughts score all
    mix_ids, mix_labels = training_rows(tokenizer, plain, training_style(ctx.config), 1.0, section.seed + 2, demos)
    pairs = [(e.tokens, e.tokens) for _, e in kept] + list(zip(mix_ids, mix_labels, strict=True))
    random.Random(section.seed).shuffle(pairs)
    counts = {f"bake/examples_{name}": float(sum(r.strategy == name for r, _ in kept)) for name in STRATEGY_NAMES}
    counts.update(
        {
            "bake/reasoning_examples": float(len(kept)),
            "bake/plain_examples": float(len(plain)),
            "bake/tool_demos": float(len(demos)),
            "bake/fit_share": sum(len(e.tokens) <= seq_len for e in encoded) / max(1, len(encoded)),
        }
    )
    return [ids for ids, _ in pairs], [labels for _, labels in pairs], counts
