"""Phase 6 Baking (D5, D13, D16, D17; Prompt Baking, Bhargava et al. 2024): a persona prompt, then a tool-use
prompt, into the weights.

Each bake samples continuations of task bodies from the frozen prompted model (its calls executed by the
tool runtime, the answer cue inserted after a thought; inserted tokens are never scored), then trains the
unprompted model to match it token by token (KL) with the Phase 6 optimizer, fully or through low-rank
adapters merged back at the end; BitLinear layers stay ternary throughout. On the kinds named by
``baking.anchor_kinds`` the tool bake's teacher reads no prompt, so there the bake holds the model as it was
(D17); with ``baking.reference_demos`` its bare calculations and conversions continue with their reference
demonstration, scored as hard targets (D18); ``baking.thought_anchors`` arithmetic bodies followed by
``<think>`` and a strategy marker are continued without the prompt too, holding the reasoning thoughts that
think mode's grammar asks for (D22). Measured: KL before/after each bake on held-out bodies without
the prompt; tools mode (call, well-formed, right-result rates, accuracy) of the prompted model, and of the
unprompted one before and after the bake; the persona's marker share with the prompt, before and after; and
the D6 record with its tools column.
"""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent_forge.baking import (
    BakeData,
    LoRAConfig,
    References,
    apply_lora,
    batch_kl,
    marker_share,
    mean_kl,
    mean_pair_cosine,
    merge_lora,
    prepare_bake,
    refreeze,
    release_ternary,
    ternary_flip_share,
    ternary_values,
)
from agent_forge.data.sources import training_examples
from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import BOS_ID, EOS_ID, ForgeTokenizer
from agent_forge.eval.suite import select_examples
from agent_forge.model_io import bitlinear_config_of, bitlinear_meta, load_model, model_writer, packed_writer
from agent_forge.optim import MuGrokConfig, build_optimizer
from agent_forge.phases.common import (
    SessionData,
    add_tools_record,
    baking_prompts,
    eval_record,
    frozen_copy,
    input_pack_config,
    pack_output,
    packed_inference_latency_ms,
    parameter_count,
    record_metrics,
    session_data,
    tools_metrics,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.quant.bitlinear import bitlinear_modules
from agent_forge.reasoning.data import split_prompt
from agent_forge.reasoning.strategies import STRATEGIES, THINK_OPEN
from agent_forge.reasoning.tools_mode import reference_pieces, tools_report
from agent_forge.tools import decode
from agent_forge.tools.demos import demo_tasks
from agent_forge.tools.runtime import AnswerCue, ToolRuntime
from agent_forge.tools.tasks import TOOL_KIND, tool_tasks
from agent_forge.train.distributed import world, wrap_ddp
from agent_forge.train.loop import LoopResult, StepOutput, TrainLoop
from agent_forge.train.precision import resolve_device, use_bf16

BAKE_SEEDS = {"tools": 61, "persona": 62}


def kl_step(model: nn.Module, batch: dict[str, torch.Tensor]) -> StepOutput:
    loss = batch_kl(model, batch)
    return StepOutput(loss, {"kl": float(loss.detach())})


def optimizer_config(section: Any, device: torch.device) -> MuGrokConfig:
    """The D11 Phase 6 preset times ``lr_scale``; Newton-Schulz in fp32 on a CPU, where bf16 matmuls are
    emulated and about 3.5x slower (measured on tiny: 0.26 s against 0.07 s per optimizer step)."""
    base = MuGrokConfig.from_phase("6")
    return base.scaled(section.lr_scale, ns_dtype="float32" if device.type == "cpu" else base.ns_dtype)


def bake_tasks(config: Any, n: int, seed: int, name: str) -> list[TaskExample]:
    """The tasks whose bodies a bake reads (D16). The tool bake: half the training mix, half tool
    demonstration tasks (arithmetic of every level, bare calculations and conversions), so it sees where calls
    belong and where not. The persona bake, first: the whole mix, so the tool bake's teacher (the persona-baked
    model reading the tool prompt) signs off on arithmetic too. The persona bake after the tool bake: the
    kinds that make no calls (multiple choice, code), or it teaches the tool-baked model to stop calling
    (measured: on every kind it erased every call)."""
    if name == "persona":
        no_calls = {kind: float(kind != "arith") for kind in config.data.kinds}
        weights = no_calls if config.baking.schedule == "tools_first" and any(no_calls.values()) else None
        return training_examples(config, n, seed, kind_weights=weights)
    section = config.baking
    demos = demo_tasks(n // 2, seed, levels=tuple(range(1, config.data.max_level + 1)),
                       mixed_widths=section.mixed_width_demos)
    calculations = tool_tasks(section.calculation_demos, seed + 1, max_level=2, mixed_widths=section.mixed_width_demos,
                              tools=("calculator",)) if section.calculation_demos else []
    return [*training_examples(config, n - len(demos), seed), *demos, *calculations]


def bodies_and_cues(tokenizer: ForgeTokenizer, tasks: Sequence[TaskExample]) -> tuple[list[list[int]], list[list[int]]]:
    """Each task's body (what a bake or a generation reads) and its answer cue, as ids."""
    parts = [split_prompt(t) for t in tasks]
    return (tokenizer.encode_batch([body for body, _ in parts]),
            tokenizer.encode_batch([cue or " Answer:" for _, cue in parts]))


def thought_anchor_queries(tokenizer: ForgeTokenizer, tasks: Sequence[TaskExample], n: int, seed: int
                           ) -> tuple[list[list[int]], list[list[int]]]:
    """The bodies of the first ``n`` arithmetic ``tasks``, each followed by ``<think>`` and a strategy marker
    drawn at random, and their cues (D22): continued by the model without the tool prompt, they hold its
    reasoning thoughts (think mode's grammar opens every thought so) while the tool bake teaches calls."""
    chosen = [t for t in tasks if t.kind == "arith"][:n]
    bodies, cues = bodies_and_cues(tokenizer, chosen)
    rng, think = random.Random(seed), tokenizer.special_id(THINK_OPEN)
    markers = [tokenizer.special_id(s.token) for s in STRATEGIES]
    return [[*body, think, rng.choice(markers)] for body in bodies], cues


def answer_hook(tokenizer: ForgeTokenizer, cue_of: dict[tuple[int, ...], list[int]]
                ) -> Callable[[list[list[int]]], AnswerCue]:
    """For a list of bodies, the hook that runs tools in a thought and inserts each body's cue after it."""
    return lambda queries: AnswerCue(tokenizer, [cue_of[tuple(q)] for q in queries], ToolRuntime(tokenizer))


def generations(model: nn.Module, tokenizer: ForgeTokenizer, prompts: list[list[int]], cues: list[list[int]],
                tokens: int) -> list[list[int]]:
    """Greedy continuations of token prompts in one batch, tools live and the cue after a thought (the
    tokens after each prompt, <eos> excluded)."""
    hook = AnswerCue(tokenizer, cues, ToolRuntime(tokenizer))
    return [[t for t in d.tokens if t != EOS_ID] for d in decode(model, prompts, tokens, hook=hook)]


def tool_figures(ctx: PhaseContext, model: nn.Module, tokenizer: ForgeTokenizer,
                 prefixes: dict[str, list[int]]) -> dict[str, float]:
    """Tools mode on held-out tasks of every kind and level, per prefix (a prompt or none): on arithmetic
    the call rate, well-formed rate, right-result rate and accuracy; elsewhere the call rate."""
    section, data = ctx.phase_config, session_data(ctx)
    tasks = select_examples(data.heldout.examples, None, None, section.eval_examples)
    figures: dict[str, float] = {}
    for name, prefix in prefixes.items():
        report = tools_report(model, tokenizer, tasks, ctx.config.data.seq_len,
                              ctx.config.quietstar.max_thought_tokens, prefix=prefix)
        arith, other = report["tools"].get("arith"), [report["tools"][k] for k in report["tools"] if k
                                                      not in ("overall", "arith")]
        for figure, key in (("call_rate", "call_rate"), ("format_valid", "well_formed_rate"),
                            ("result_correct", "result_correct_rate"), ("accuracy", "accuracy")):
            if arith is not None:
                figures[f"{name}/{figure}"] = arith[key]["accuracy"]
                figures[f"{name}/{figure}_n"] = arith[key]["n"]
        calls = sum(k["call_rate"]["correct"] for k in other)
        figures[f"{name}/call_rate_other_kinds"] = calls / max(sum(k["call_rate"]["n"] for k in other), 1)
        ctx.logger.info("tool use", stage=name, call_rate=figures.get(f"{name}/call_rate"),
                        sample=(report["samples"] or [""])[0][:160])
    return figures


@dataclass
class PersonaCheck:
    """The persona's marker share on held-out bodies: the prompted model (the reference), the unprompted one
    before baking and, from ``after``, the baked one; with each unprompted set's similarity to the reference."""

    tokenizer: ForgeTokenizer
    bodies: list[list[int]]
    cues: list[list[int]]
    tokens: int
    reference: list[list[int]]
    unprompted: list[list[int]]

    @classmethod
    def before(cls, ctx: PhaseContext, model: nn.Module, tokenizer: ForgeTokenizer, prompt: list[int],
               heldout: list[TaskExample]) -> PersonaCheck:
        section = ctx.phase_config
        bodies, cues = bodies_and_cues(tokenizer, heldout[: section.eval_examples])
        prompts = [[BOS_ID, *prompt, *q] for q in bodies] + [[BOS_ID, *q] for q in bodies]
        first = generations(model, tokenizer, prompts, cues * 2, section.eval_new_tokens)
        return cls(tokenizer, bodies, cues, section.eval_new_tokens, first[: len(bodies)], first[len(bodies) :])

    def after(self, model: nn.Module, markers: Sequence[str]) -> dict[str, Any]:
        baked = generations(model, self.tokenizer, [[BOS_ID, *q] for q in self.bodies], self.cues, self.tokens)
        n = len(self.bodies)
        text = [self.tokenizer.decode(g) for g in (*self.reference, *self.unprompted, *baked)]
        return {
            "persona/markers": ",".join(markers),
            "persona/marker_share_prompted": marker_share(text[:n], markers),
            "persona/marker_share_before": marker_share(text[n : 2 * n], markers),
            "persona/marker_share_after": marker_share(text[2 * n :], markers),
            "persona/similarity_before": mean_pair_cosine(self.unprompted, self.reference),
            "persona/similarity_after": mean_pair_cosine(baked, self.reference),
        }


@dataclass(kw_only=True)
class BakingRun(PhaseRun):
    cpu_started: float
    data: SessionData
    device: torch.device
    model: nn.Module
    metrics: dict[str, Any] = field(default_factory=dict)
    packed: Path | None = None


class BakingPhase(Phase):
    name = "baking"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> BakingRun:
        cpu, data = time.process_time(), session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        model = load_model(inputs[0]).to(device)
        return BakingRun(inputs=inputs, cpu_started=cpu, data=data, device=device, model=model)

    def measure_before(self, ctx: PhaseContext, run: BakingRun) -> EvalRecord:
        ref = run.inputs[0]
        return self._record(run.model, run.data.heldout, ref.metadata.get("size_mb", ref.size_mb))

    def work(self, ctx: PhaseContext, run: BakingRun) -> None:
        """Bake the persona prompt and the tool prompt, one after the other (D16); a ternary model is packed
        again afterwards."""
        section, model, tokenizer, metrics = ctx.phase_config, run.model, run.data.tokenizer, run.metrics
        metrics.update(record_metrics("before", run.before))
        ternary_before = ternary_values(model)
        tools_prompt, persona = baking_prompts(ctx.config)
        prompts = {"tools": tokenizer.encode(tools_prompt.text), "persona": tokenizer.encode(persona.text)}
        metrics.update(tool_figures(ctx, model, tokenizer, {"tools_prompted": prompts["tools"], "tools_before": []}))
        persona_check = PersonaCheck.before(ctx, model, tokenizer, prompts["persona"], run.data.heldout.examples)
        order = ["persona", "tools"] if section.schedule == "persona_first" else ["tools", "persona"]
        for name in order:  # each teacher is the model as the bakes before left it
            metrics.update(self._fit(ctx, name, model, self._prepare(ctx, name, model, prompts[name]), run.device))
        metrics.update(tool_figures(ctx, model, tokenizer, {"tools_after": []}))
        metrics.update(persona_check.after(model, persona.markers))
        metrics.update({f"{name}/prompt_tokens": len(prompt) for name, prompt in prompts.items()})
        metrics["bitlinear/layers"] = len(ternary_before)
        metrics["bitlinear/ternary_flip_share"] = ternary_flip_share(ternary_before, model)
        run.packed = self._pack(ctx, model, run.inputs[0], run.data.heldout, metrics)

    def measure_after(self, ctx: PhaseContext, run: BakingRun) -> EvalRecord:
        after = self._record(run.model, run.data.heldout, run.metrics.get("size_mb", run.inputs[0].size_mb))
        tools = tools_metrics(run.model, run.data, ctx.config)  # the D6 tools column: the baked model alone
        add_tools_record(after, tools)
        run.metrics.update(tools)
        return after

    def save(self, ctx: PhaseContext, run: BakingRun) -> PhaseResult:
        metrics, after, packed = run.metrics, run.after, run.packed
        metrics.update(record_metrics("after", after))
        metrics["wall_seconds"] = run.seconds
        metrics["cpu_seconds"] = time.process_time() - run.cpu_started
        out = self._save(ctx, run.model, run.data.tokenizer, run.inputs[0], metrics, packed)
        if packed is None:  # the stored folder is the model: its size is known once written
            after.size_mb = metrics["after/size_mb"] = out.size_mb
        return PhaseResult(True, self.name, [out], metrics, duration_seconds=run.seconds,
                           before=run.before, after=after)

    # ---- bakes -------------------------------------------------------------------------------------

    def _prepare(self, ctx: PhaseContext, name: str, model: nn.Module, prompt: list[int]) -> BakeData:
        """Bake ``name``'s data: the frozen ``model`` reading ``prompt`` continues the bodies of training tasks
        (held out: D6 tasks), its calls run and each cue follows its thought; in the tool bake, bodies of
        ``anchor_kinds`` are continued without the prompt (D17) and bare tool tasks, with ``reference_demos``,
        by their reference demonstration (D18)."""
        section, tokenizer = ctx.phase_config, session_data(ctx).tokenizer
        seed = ctx.config.data.seed + BAKE_SEEDS[name]
        tasks = bake_tasks(ctx.config, -(-section.continuations // section.samples_per_query), seed, name)
        train_q, train_cues = bodies_and_cues(tokenizer, tasks)
        thought_q, thought_cues = thought_anchor_queries(tokenizer, tasks, section.thought_anchors if name == "tools"
                                                         else 0, seed)
        heldout_tasks = session_data(ctx).heldout.examples[: section.eval_examples]
        held_q, held_cues = bodies_and_cues(tokenizer, heldout_tasks)
        cue_of = {tuple(q): c for q, c in zip([*train_q, *thought_q, *held_q],
                                              [*train_cues, *thought_cues, *held_cues], strict=True)}
        anchors = {tuple(q) for q, t in zip([*train_q, *held_q], [*tasks, *heldout_tasks], strict=True)
                   if name == "tools" and t.kind in section.anchor_kinds} | {tuple(q) for q in thought_q}
        wanted = name == "tools" and section.reference_demos  # D18
        references = {tuple(q): reference_pieces(tokenizer, t, c)
                      for q, c, t in zip(train_q, train_cues, tasks, strict=True) if wanted and t.kind == TOOL_KIND}
        teacher = frozen_copy(model)
        return prepare_bake(teacher, prompt, [*train_q, *thought_q], held_q, section.samples_per_query,
                            section.continuation_len, ctx.config.data.seed * 100 + BAKE_SEEDS[name],
                            section.train.batch_size, section.temperature, answer_hook(tokenizer, cue_of),
                            (lambda q: tuple(q) in anchors) if anchors else None,
                            References(lambda q: references.get(tuple(q)), tokenizer.special_id(THINK_OPEN))
                            if references else None)

    def _fit(self, ctx: PhaseContext, name: str, model: nn.Module, bake: BakeData,
             device: torch.device) -> dict[str, float]:
        """Bake into ``model`` in place, fully or through low-rank adapters merged at the end; the figures: the
        held-out KL before and after, the first and last batch KL, the steps and seconds."""
        started, section, batch = time.perf_counter(), ctx.phase_config, ctx.phase_config.train.batch_size
        figures = {f"{name}/kl_heldout_before": mean_kl(model, bake.heldout, bake.heldout_lp, batch),
                   f"{name}/continuations": len(bake.train), f"{name}/heldout_continuations": len(bake.heldout),
                   f"{name}/reference_rows": bake.references}
        frozen = release_ternary(model)
        handle = None
        if section.lora_rank:
            handle = apply_lora(model, LoRAConfig(section.lora_rank), torch.Generator().manual_seed(BAKE_SEEDS[name]))
        result = self._train(ctx, name, model, bake, device, lora=handle is not None)
        if handle is not None:  # what the adapters compute, which the merge must keep
            figures[f"{name}/kl_heldout_adapter"] = result.last_eval["kl_heldout"]
            figures[f"{name}/lora_modules"] = len(handle.names)
            merge_lora(model, handle)
        refreeze(model, frozen)
        model.eval()
        changed_since_eval = handle is not None or bool(frozen)  # merged adapters, or weights snapped to ternary
        figures[f"{name}/kl_heldout_after"] = mean_kl(model, bake.heldout, bake.heldout_lp, batch) \
            if changed_since_eval else result.last_eval["kl_heldout"]
        figures[f"{name}/kl_train_first_batch"], figures[f"{name}/kl_train_last_batch"] = \
            result.losses[0], result.losses[-1]
        figures[f"{name}/steps"] = len(result.losses)
        figures[f"{name}/seconds"] = time.perf_counter() - started
        return figures

    def _train(self, ctx: PhaseContext, name: str, model: nn.Module, bake: BakeData, device: torch.device,
               lora: bool) -> LoopResult:
        section = ctx.phase_config
        optimizer = build_optimizer(model, optimizer_config(section, device), qk_clip_modules=[] if lora else None)
        rank, size = world()
        batch = section.train.batch_size

        def evaluate(m: nn.Module) -> dict[str, float]:
            return {"kl_heldout": mean_kl(m, bake.heldout, bake.heldout_lp, batch)}

        settings = {**section.model_dump(mode="json"), "bake": name}
        loop = TrainLoop(ctx=ctx, run_name=f"bake_{name}", model=wrap_ddp(model, device), optimizer=optimizer,
                         batch_fn=lambda position: bake.batch(position, batch, rank, size), step_fn=kl_step,
                         total_steps=section.steps_per_bake, train=section.train, config=settings,
                         eval_fn=evaluate, device=device, bf16=use_bf16(section.train.bf16, device))
        return loop.run()

    # ---- output ------------------------------------------------------------------------------------

    @staticmethod
    def _record(model: nn.Module, heldout: Any, size_mb: float | None) -> Any:
        """The D6 record; a ternary model's latency is that of its packed integer path, as in phases 4-5."""
        ternary = bool(bitlinear_modules(model))
        record = eval_record(model, heldout, size_mb, latency=not ternary)
        if ternary:
            record.latency_ms = packed_inference_latency_ms(model)
        return record

    @staticmethod
    def _pack(ctx: PhaseContext, model: nn.Module, ref: ModelRef, heldout: Any,
              metrics: dict[str, Any]) -> Path | None:
        """A ternary model is stored like its input: its packed file is what it weighs on a device."""
        if not bitlinear_modules(model):
            return None
        packed, gap = pack_output(ctx, model, input_pack_config(ref), heldout, "baked")
        metrics["packed/logits_max_abs_diff"] = gap
        metrics["size_mb"] = metrics["packed/size_mb"] = packed.stat().st_size / 1e6
        return packed

    def _save(self, ctx: PhaseContext, model: nn.Module, tokenizer: ForgeTokenizer, ref: ModelRef,
              metrics: dict[str, Any], packed: Path | None) -> ModelRef:
        section = ctx.phase_config
        metadata: dict[str, Any] = {
            "baked_prompts": [section.tool_prompt, section.persona_prompt], "lora_rank": section.lora_rank,
            "kl_tools_before": metrics["tools/kl_heldout_before"],
            "kl_tools_after": metrics["tools/kl_heldout_after"],
            "kl_persona_before": metrics["persona/kl_heldout_before"],
            "kl_persona_after": metrics["persona/kl_heldout_after"],
            "tool_call_rate": metrics.get("tools/call_rate_arith"),
            "tool_format_valid": metrics.get("tools/well_formed_rate_arith"),
            "tool_accuracy": metrics.get("tools/accuracy_arith"),
            "persona_adherence": metrics["persona/marker_share_after"],
        }
        bit_config = bitlinear_config_of(ref)
        if bit_config is not None:
            metadata["bitlinear"] = bitlinear_meta(model, bit_config)
        writer = model_writer(model, tokenizer)
        if packed is not None:
            writer = packed_writer(model, tokenizer, packed)
            metadata.update(size_mb=metrics["size_mb"], packed_file=packed.name,
                            pack_format=input_pack_config(ref).ternary_format)
        out = ctx.save_model("baked", writer, metadata, metrics=metrics,
                             parameters=parameter_count(model), parents=[ref.model_id])
        if packed is not None:
            shutil.rmtree(packed.parent, ignore_errors=True)
        return out
