"""Phase 8, Final compression (D5, D12): lossy coding of the remaining fp tensors, entropy coding on all.

The Phase 7 model's BitLinear layers become their Phase 4 packed blocks; the planner then tries the
preset's lossy methods (``usq`` at several grid steps, and SeedLM / VPTQ where the preset lists them) on
each large floating tensor (the tied embedding/head) and keeps the smallest whose quality stays inside the
budget: perplexity within ``max_ppl_increase`` and every task kind's accuracy within
``max_accuracy_drop`` of the input model's. The planner measures on the selection split, never on the D6
held-out set, which only reports. ``usq`` weighs the embedding's rows by how often the training data reads
each token. Every stream is entropy coded. The file is decoded back into a model, checked bit-exact against
the in-memory reconstruction, and the decoded model is what the D6 "after" record measures. Every stage's
size is reported with its quality, beside the plain baselines measured in the same run (GGUF Q4_0 blocks +
``xz -9e``; ``xz -9e`` on the streams of the lossless stage): the size/quality curve of the report.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from agent_forge.config.schema import FinalSection, PipelineConfig
from agent_forge.data.sources import training_examples
from agent_forge.data.tasks import mix_tasks
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.heldout import HeldoutSet, evaluate
from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta, load_model, write_model_folder
from agent_forge.phases.common import (
    SessionData,
    accuracy_metadata,
    add_think_record,
    add_tools_record,
    eval_record,
    parameter_count,
    record_metrics,
    session_data,
    think_metrics,
    tool_demos,
    tools_metrics,
    training_style,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.quant.baselines import q4_0_file, stage_input, xz_9e_size
from agent_forge.quant.bitlinear import BitLinearConfig
from agent_forge.quant.container import MethodSpec, decode_container, read_metadata, write_model
from agent_forge.quant.model_codec import ModelCodecConfig, ModelLayout, load_tensors_into, model_tensors
from agent_forge.quant.planner import PlannerConfig, PlanResult, Quality, classify_tensor, plan_compression
from agent_forge.quant.seedlm import SeedLMConfig
from agent_forge.quant.uniform import UniformConfig
from agent_forge.quant.vptq import VPTQConfig
from agent_forge.reasoning.data import training_rows
from agent_forge.reasoning.think_mode import evaluate_think_mode
from agent_forge.reasoning.tools_mode import reference_row, references_written
from agent_forge.tools.tasks import tool_tasks

COMPRESSED_FILE = "model.afqz"
REPORT_FILE = "compression_report.json"
BARE_SEED = 818  # the bare calculations of the budget: their own draw of the selection split
WORDS_SEED = 828  # and its word problems


def candidates(section: FinalSection) -> dict[str, list[MethodSpec]]:
    """Lossy methods for large floating tensors, as the preset lists them (the planner measures each)."""
    methods: list[MethodSpec] = []
    if "usq" in section.methods:
        methods += [UniformConfig(step=step, clusters=section.usq_clusters, max_exponent=section.usq_max_exponent)
                    for step in section.usq_steps]
    if "vptq" in section.methods:
        methods.append(VPTQConfig(vector=section.vptq_vector, codebook=section.vptq_codebook))
        if section.vptq_residual:
            methods.append(VPTQConfig(vector=section.vptq_vector, codebook=section.vptq_codebook,
                                      residual=section.vptq_codebook))
    if "seedlm" in section.methods:
        methods.append(SeedLMConfig(block=section.seedlm_block, coeffs=section.seedlm_coeffs,
                                    lfsr_bits=section.seedlm_lfsr_bits, coeff_bits=section.seedlm_bits))
    return {"matrix": methods}


def token_importance(config: PipelineConfig, tokenizer: ForgeTokenizer, n_examples: int) -> torch.Tensor | None:
    """How often each token occurs in ``n_examples`` training rows written as every phase's mix writes them
    (thoughts, tool demonstrations, the persona), plus one (a token the sample missed counts as rare, not
    as unused); None when ``n_examples`` is 0."""
    # the rows as written, not the bare `prompt answer`: counted bare, `<think>`, `</args>` and the persona's
    # name occur 0 times and get usq's coarsest step, though the baked model writes them on every call
    if n_examples <= 0:
        return None
    seed = config.data.seed + 808
    examples = training_examples(config, n_examples, seed=seed)
    demos = tool_demos(config, round(n_examples * config.data.tool_demo_share), seed + 1)
    rows, _ = training_rows(tokenizer, examples, training_style(config), 0.0, seed, demos)
    ids = np.asarray([token for row in rows for token in row], dtype=np.int64)
    counts = np.bincount(ids, minlength=config.model.vocab_size)
    return torch.from_numpy(counts[: config.model.vocab_size].astype(np.float64) + 1.0)


def embedding_key(model: ForgeForCausalLM, layout: ModelLayout) -> str:
    """The container key under which the (tied) input embedding is stored."""
    weight = model.get_input_embeddings().weight
    name = next(key for key, value in model.state_dict(keep_vars=True).items() if value is weight)
    return layout.aliases.get(name, name)


@dataclass(frozen=True)
class ToolsProbe:
    """Tools mode on the selection tasks of ``kinds``: each is a kind of the planner's budget (``tools_<kind>``),
    so a code that keeps direct answers but breaks the calls the model makes is refused. ``bare``: rows of
    bare calculations (``reference_row``), the kind ``tools_bare``: is each written exactly, call and answer?
    ``words``: the same for arithmetic word problems (levels 1-3), the kind ``tools_words``."""

    tokenizer: ForgeTokenizer
    kinds: tuple[str, ...]
    max_tokens: int
    bare: tuple[tuple[list[int], list[bool]], ...] = ()
    words: tuple[tuple[list[int], list[bool]], ...] = ()


def tools_probe(config: PipelineConfig, tokenizer: ForgeTokenizer) -> ToolsProbe | None:
    """The probe the preset asks for (``final.tools_kinds``, ``final.tools_bare_tasks``,
    ``final.tools_word_tasks``), or None."""
    section = config.final
    if not (section.tools_kinds or section.tools_bare_tasks or section.tools_word_tasks):
        return None
    bare = tool_tasks(section.tools_bare_tasks, config.data.seed + BARE_SEED, "selection", max_level=2,
                      mixed_widths=True, tools=("calculator",)) if section.tools_bare_tasks else []
    words = mix_tasks(section.tools_word_tasks, config.data.seed + WORDS_SEED, split="selection", kinds=("arith",),
                      levels=(1, 2, 3)) if section.tools_word_tasks else []
    return ToolsProbe(tokenizer, tuple(section.tools_kinds), config.quietstar.max_thought_tokens,
                      tuple(reference_row(tokenizer, task) for task in bare),
                      tuple(reference_row(tokenizer, task) for task in words))


def measure(model: ForgeForCausalLM, held: HeldoutSet, probe: ToolsProbe | None = None) -> Quality:
    """The planner's figure: mean loss (nats), accuracy per kind and which tasks of each kind were right
    (with ``probe``: also in tools mode)."""
    result = evaluate(model, held)
    kinds = [example.kind for example in held.examples]
    correct = {kind: tuple(ok for k, ok in zip(kinds, result.correct, strict=True) if k == kind)
               for kind in result.accuracy_by_kind} if result.correct else {}
    accuracy = dict(result.accuracy_by_kind)
    for kind in probe.kinds if probe is not None and result.correct else ():
        rows = [i for i, k in enumerate(kinds) if k == kind]
        outcome = evaluate_think_mode(model, probe.tokenizer, [held.examples[i] for i in rows],
                                      [result.correct[i] for i in rows], probe.max_tokens, tools=True).correct
        accuracy[f"tools_{kind}"] = sum(outcome) / max(len(outcome), 1)
        correct[f"tools_{kind}"] = tuple(outcome)
    for name, rows in (("tools_bare", probe.bare), ("tools_words", probe.words)) if probe is not None else ():
        if rows:
            written = references_written(model, rows)
            accuracy[name], correct[name] = sum(written) / len(written), tuple(written)
    return Quality(result.loss, accuracy, correct)


def rebuild(tensors: Mapping[str, Tensor], metadata: Mapping[str, Any]) -> ForgeForCausalLM:
    """A runnable model from container tensors and the metadata stored in the container's header."""
    model = ForgeForCausalLM(ForgeConfig.from_dict(dict(metadata["model_config"])))
    load_tensors_into(model, tensors, ModelLayout.from_json(metadata["layout"]))
    return model.eval()


def decode_file(path: Path) -> ForgeForCausalLM:
    """The decoder: the compressed file alone gives back the model."""
    data = Path(path).read_bytes()
    return rebuild(decode_container(data), read_metadata(data))


def _stage(nbytes: int, fp32_bytes: int, loss: float, seconds: float = 0.0) -> dict[str, float]:
    return {"bytes": int(nbytes), "ratio": fp32_bytes / max(1, nbytes), "perplexity": math.exp(loss),
            "seconds": seconds}


def stage_table(plan: PlanResult, fp32_bytes: int) -> dict[str, dict[str, float]]:
    """Sizes per stage against the fp32 size of the same parameters, each with its perplexity on the
    selection split (the planner's measure; fp32 is the input model)."""
    original, entropy_only, methods, final = plan.stages
    return {
        "fp32": _stage(fp32_bytes, fp32_bytes, plan.reference.value),
        "ternary_packed": _stage(original.bytes, fp32_bytes, original.value),
        "ternary_packed+entropy": _stage(entropy_only.bytes, fp32_bytes, entropy_only.value,
                                         entropy_only.encode_seconds),
        "+seedlm/vptq": _stage(methods.bytes, fp32_bytes, methods.value, methods.encode_seconds),
        "+seedlm/vptq+entropy": _stage(final.bytes, fp32_bytes, final.value, final.encode_seconds),
    }


def _verify_bit_exact(decoded: ForgeForCausalLM, in_memory: ForgeForCausalLM) -> None:
    state_a, state_b = decoded.state_dict(), in_memory.state_dict()
    differing = [k for k in state_b if k not in state_a or not torch.equal(state_a[k], state_b[k])]
    if differing or state_a.keys() != state_b.keys():
        raise RuntimeError(f"decoded model differs from the in-memory reconstruction at {differing[:3]}")


def _report(plan: PlanResult, stages: dict, entropy_saved: int, comparison: dict) -> dict[str, Any]:
    decisions = [{"tensor": d.name, "class": d.tensor_class, "chosen": d.chosen,
                  "stored_bytes": d.stored_bytes, "bits_per_weight": d.bits_per_weight,
                  "attempts": [{"method": a.method, "bytes": a.stored_bytes, "loss": a.value,
                                "accuracy": dict(a.accuracy), "accepted": a.accepted,
                                "encode_s": a.encode_seconds} for a in d.attempts]}
                 for d in plan.decisions]
    return {"stages": stages, "decisions": decisions, "entropy_saved_bytes": entropy_saved,
            "loss_limit": plan.limit, "reference": {"loss": plan.reference.value,
                                                     "accuracy": dict(plan.reference.accuracy)},
            "stage_table": plan.stage_table(), "split": "selection", **comparison}


def _point(label: str, role: str, nbytes: int, quality: Quality) -> dict[str, Any]:
    """One point of the size/quality curve (quality on the selection split)."""
    return {"label": label, "role": role, "bytes": int(nbytes), "perplexity": math.exp(quality.value),
            "accuracy": dict(quality.accuracy)}


def size_quality_curve(plan: PlanResult) -> list[dict[str, Any]]:
    """Every measured attempt as a whole-file size (the file with that tensor's attempt in place of its
    choice) with its quality, the lossless file, and the file Phase 8 wrote."""
    size = len(plan.compressed.data)
    points = [_point("lossless (entropy only)", "lossless", plan.stages[1].bytes,
                     Quality(plan.stages[1].value, plan.stages[1].accuracy))]
    for decision in plan.decisions:
        for attempt in (a for a in decision.attempts if a.value is not None):
            nbytes = size - decision.stored_bytes + attempt.stored_bytes
            points.append(_point(attempt.method.split("(")[0] + _step_label(attempt.method), "candidate", nbytes,
                                 Quality(attempt.value, attempt.accuracy)))
    points.append(_point("Phase 8 file", "chosen", size, plan.final_quality))
    return points


def _step_label(method: str) -> str:
    """``usq(step=0.3, ...)`` -> `` step 0.3`` (the usq grid is what tells its points apart)."""
    return f" step {method.split('step=')[1].split(',')[0]}" if method.startswith("usq(") else ""


def baseline_comparison(plan: PlanResult, tensors: dict[str, Tensor], lossy: set[str],
                        measure_tensors: Any) -> dict[str, Any]:
    """The plain baselines on the same model, measured in this run: Q4_0 blocks on the tensors the
    planner may code lossily plus ``xz -9e`` over the whole file; ``xz -9e`` over exactly the streams our
    lossless stage codes, for the lossless file and for the file written."""
    q4_bytes, q4_tensors = q4_0_file(tensors, lossy)
    q4_quality = measure_tensors(q4_tensors)
    raw = b"".join(t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() for t in tensors.values())
    baselines = {
        "q4_0+xz": _point("Q4_0 blocks + xz -9e", "baseline", xz_9e_size(q4_bytes), q4_quality),
        "xz_lossless": _point("xz -9e (lossless)", "baseline", xz_9e_size(raw), plan.reference),
    }  # (the xz file sizes include the .xz framing, as a user's `xz -9e model.bin` would)
    # streams against streams: the container's header (metadata, lengths, checksums) is counted by neither
    lossless_stage = {"ours_bytes": plan.stream_bytes,
                      "xz_9e_bytes": xz_9e_size(stage_input(plan.compressed.tensors.values())),
                      "ours_lossless_bytes": plan.lossless_stream_bytes,
                      "xz_9e_lossless_bytes": baselines["xz_lossless"]["bytes"],
                      "header_bytes": len(plan.compressed.data) - plan.stream_bytes}
    return {"baselines": baselines, "lossless_stage": lossless_stage,
            "curve": [*size_quality_curve(plan), *baselines.values()]}


def accuracy_drops(before: Any, after: Any) -> dict[str, float]:
    """D6 accuracy lost per kind (points as fractions; negative when it rose) and the largest loss."""
    was, now = accuracy_metadata(before), accuracy_metadata(after)
    drops = {f"accuracy_drop_{key.removeprefix('accuracy_')}": value - now.get(key, 0.0)
             for key, value in was.items() if key != "accuracy"}
    drops["accuracy_drop"] = max(drops.values(), default=before.accuracy - after.accuracy)
    return drops


def _writer(data: bytes, model: ForgeForCausalLM, tokenizer: ForgeTokenizer, report: dict) -> Any:
    def write(folder: Path) -> None:
        write_model(folder / COMPRESSED_FILE, data)
        write_model_folder(model, tokenizer, folder)
        (folder / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))

    return write


@dataclass(kw_only=True)
class FinalRun(PhaseRun):
    data: SessionData
    model: ForgeForCausalLM
    tensors: dict[str, Tensor]
    layout: ModelLayout
    fp32_bytes: int
    bar: Any = None  # the phase's progress bar
    plan: PlanResult | None = None
    measure_tensors: Any = None  # the planner's measure (selection split) of a set of container tensors
    decoded: ForgeForCausalLM | None = None
    decode_seconds: float = 0.0
    comparison: dict[str, Any] = field(default_factory=dict)  # the baselines and the size/quality curve


class FinalPhase(Phase):
    """Phase 8: plan on the selection split, write, decode, verify, compare with baselines, measure on D6."""

    name = "final"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> FinalRun:
        section: FinalSection = ctx.phase_config
        data = session_data(ctx)
        model = load_model(inputs[0])
        codec = ModelCodecConfig(ctx.config.bitnet.pack_format, section.float_dtype)
        tensors, layout = model_tensors(model, codec)
        run = FinalRun(inputs=inputs, data=data, model=model, tensors=tensors, layout=layout,
                       fp32_bytes=parameter_count(model) * 4)
        run.bar = run.closing.enter_context(ctx.progress.task("final: compress", total=5))
        return run

    def measure_before(self, ctx: PhaseContext, run: FinalRun) -> EvalRecord:
        """The input's record, its size that of its tensors in the codec's storage types."""
        packed_mb = sum(t.numel() * t.element_size() for t in run.tensors.values()) / 1e6
        before = eval_record(run.model, run.data.heldout, run.inputs[0].size_mb or packed_mb)  # the input's one size
        run.bar.advance()
        return before

    def work(self, ctx: PhaseContext, run: FinalRun) -> None:
        """Plan the compression under the quality budget (selection split), decode the container and verify
        it, then measure the plain baselines on the same model."""
        section: FinalSection = ctx.phase_config
        importance = token_importance(ctx.config, run.data.tokenizer, section.importance_examples)
        weights = {embedding_key(run.model, run.layout): importance} if importance is not None else {}
        probe = tools_probe(ctx.config, run.data.tokenizer)
        run.plan, run.measure_tensors = self._plan(section, run.model, run.tensors, run.layout,
                                                   run.data.selection, weights, probe)
        run.bar.advance()
        run.decoded, run.decode_seconds = self._decode_and_verify(run.plan)
        run.bar.advance()
        if section.baselines:
            lossy = {n for n, t in run.tensors.items()
                     if classify_tensor(n, t, section.min_lossy_numel) == "matrix"}
            run.comparison = baseline_comparison(run.plan, run.tensors, lossy, run.measure_tensors)
        run.bar.advance()

    def measure_after(self, ctx: PhaseContext, run: FinalRun) -> EvalRecord:
        after = eval_record(run.decoded, run.data.heldout, len(run.plan.compressed.data) / 1e6)
        add_think_record(after, think_metrics(run.decoded, run.data, ctx.config))
        add_tools_record(after, tools_metrics(run.decoded, run.data, ctx.config))
        run.bar.advance()
        return after

    def save(self, ctx: PhaseContext, run: FinalRun) -> PhaseResult:
        run.closing.close()  # the bar covers the compression; writing the file is the phase's own line
        timings = {"decode_seconds": run.decode_seconds, "seconds": run.seconds}
        return self._finish(ctx, run.inputs[0], run.plan, run.layout, run.decoded, run.data.tokenizer,
                            (run.before, run.after), run.fp32_bytes, timings, run.comparison)

    def _plan(self, section: FinalSection, model: ForgeForCausalLM, tensors: dict[str, Tensor],
              layout: ModelLayout, selection: HeldoutSet, importance: dict[str, Tensor],
              probe: ToolsProbe | None) -> tuple[PlanResult, Any]:
        skeleton = ForgeForCausalLM(model.config).eval()

        def measure_tensors(candidate: Mapping[str, Tensor]) -> Quality:
            return measure(load_tensors_into(skeleton, candidate, layout), selection, probe)

        config = PlannerConfig(max_increase=section.max_ppl_increase, evaluator_kind="loss",
                               zstd_level=section.zstd_level, min_lossy_numel=section.min_lossy_numel,
                               max_accuracy_drop=section.max_accuracy_drop, accuracy_drop_z=section.accuracy_drop_z)
        metadata = {"layout": layout.to_json(), "model_config": json.loads(model.config.to_json_string())}
        plan = plan_compression(tensors, measure_tensors, candidates(section), config,
                                importance=importance, reference=measure(model, selection, probe), metadata=metadata)
        return plan, measure_tensors

    def _decode_and_verify(self, plan: PlanResult) -> tuple[ForgeForCausalLM, float]:
        """Decode the container bytes and compare with the in-memory reconstruction (and time the decoder)."""
        start = time.perf_counter()
        metadata = read_metadata(plan.compressed.data)
        decoded = rebuild(decode_container(plan.compressed.data), metadata)
        seconds = time.perf_counter() - start
        _verify_bit_exact(decoded, rebuild(plan.compressed.reconstruction, metadata))
        return decoded, seconds

    def _finish(self, ctx: PhaseContext, parent: ModelRef, plan: PlanResult, layout: ModelLayout,
                decoded: ForgeForCausalLM, tokenizer: ForgeTokenizer, records: tuple[Any, Any],
                fp32_bytes: int, timings: dict[str, float], comparison: dict[str, Any]) -> PhaseResult:
        before, after = records
        stages = stage_table(plan, fp32_bytes)
        entropy_saved = sum(s.saved_bytes for item in plan.compressed.tensors.values()
                            for s in item.streams.values())
        size = len(plan.compressed.data)
        metadata: dict[str, Any] = {
            "ppl_increase": after.perplexity / before.perplexity - 1.0, **accuracy_drops(before, after),
            "compression_ratio": fp32_bytes / size, "size_mb": size / 1e6, "stages": stages,
            "compressed_file": COMPRESSED_FILE,
            "methods": {d.name: d.chosen for d in plan.decisions if d.chosen != "raw"},
        }
        if comparison:
            metadata.update({"size_quality": comparison["curve"], "lossless_stage": comparison["lossless_stage"]})
        if layout.ternary:
            metadata["bitlinear"] = bitlinear_meta(decoded, BitLinearConfig(**layout.bitlinear))
        metrics: dict[str, Any] = {**record_metrics("before", before), **record_metrics("after", after)}
        metrics.update({k: v for k, v in metadata.items() if k.startswith("accuracy_drop")})
        metrics.update({k: metadata[k] for k in ("ppl_increase", "compression_ratio", "size_mb")})
        metrics.update({f"stage/{name}/{k}": v for name, row in stages.items() for k, v in row.items()})
        metrics.update(_baseline_metrics(comparison))
        metrics.update({"entropy_saved_bytes": entropy_saved, **timings})
        for step, (name, row) in enumerate(stages.items()):
            ctx.log(step, {"bytes": row["bytes"], "ratio": row["ratio"], "perplexity": row["perplexity"]},
                    model=f"stage:{name}")
        report = _report(plan, stages, entropy_saved, comparison)
        writer = _writer(plan.compressed.data, decoded, tokenizer, report)
        ref = ctx.save_model("final", writer, metadata, metrics=metrics, parameters=parameter_count(decoded),
                             parents=[parent.model_id])
        if ctx.is_main:  # the file as written decodes to the model that was measured
            _verify_bit_exact(decode_file(ref.path / COMPRESSED_FILE), decoded)
        return PhaseResult(True, self.name, [ref], metrics, artifacts={"report": report},
                           duration_seconds=timings["seconds"], before=before, after=after)



def _baseline_metrics(comparison: dict[str, Any]) -> dict[str, float]:
    """Registry figures of the baselines: bytes and selection-split perplexity, and the lossless stage."""
    out: dict[str, float] = {}
    for key, point in comparison.get("baselines", {}).items():
        out[f"baseline/{key}/bytes"], out[f"baseline/{key}/perplexity"] = point["bytes"], point["perplexity"]
    out.update({f"lossless_stage/{k}": v for k, v in comparison.get("lossless_stage", {}).items()})
    return out
