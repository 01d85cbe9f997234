"""Phase 8, Final compression (D5, D12): SeedLM / VPTQ on the remaining fp tensors, entropy coding on all.

The Phase 7 model's BitLinear layers become their Phase 4 packed blocks; the planner then tries VPTQ and
SeedLM on each large floating tensor (the tied embedding/head) and keeps the smallest whose held-out
perplexity stays within ``max_ppl_increase`` of the input model; every stream is entropy coded. The file
is decoded back into a model, checked bit-exact against the in-memory reconstruction, and the decoded
model is what the D6 "after" record measures. Every stage's size is reported with its perplexity.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agent_forge.config.schema import FinalSection
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.heldout import HeldoutSet, heldout_loss
from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta, load_model, write_model_folder
from agent_forge.phases.common import (
    SessionData,
    add_think_record,
    add_tools_record,
    eval_record,
    parameter_count,
    record_metrics,
    session_data,
    think_metrics,
    tools_metrics,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.quant.bitlinear import BitLinearConfig
from agent_forge.quant.container import decode_container, read_metadata, write_model
from agent_forge.quant.model_codec import ModelCodecConfig, ModelLayout, load_tensors_into, model_tensors
from agent_forge.quant.planner import PlannerConfig, PlanResult, plan_compression
from agent_forge.quant.seedlm import SeedLMConfig
from agent_forge.quant.vptq import VPTQConfig

COMPRESSED_FILE = "model.afqz"
REPORT_FILE = "compression_report.json"


def candidates(section: FinalSection) -> dict[str, list]:
    """Lossy methods for large floating tensors, as the preset sets them (the planner measures each)."""
    vptq = VPTQConfig(vector=section.vptq_vector, codebook=section.vptq_codebook)
    methods: list = [vptq]
    if section.vptq_residual:
        methods.append(VPTQConfig(vector=section.vptq_vector, codebook=section.vptq_codebook,
                                  residual=section.vptq_codebook))
    methods.append(SeedLMConfig(block=section.seedlm_block, coeffs=section.seedlm_coeffs,
                                lfsr_bits=section.seedlm_lfsr_bits, coeff_bits=section.seedlm_bits))
    return {"matrix": methods}


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


def stage_table(plan: PlanResult, fp32_bytes: int, input_loss: float) -> dict[str, dict[str, float]]:
    """Sizes per stage against the fp32 size of the same parameters, each with its perplexity."""
    original, entropy_only, methods, final = plan.stages
    return {
        "fp32": _stage(fp32_bytes, fp32_bytes, input_loss),
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


def _report(plan: PlanResult, stages: dict, entropy_saved: int) -> dict[str, Any]:
    decisions = [{"tensor": d.name, "class": d.tensor_class, "chosen": d.chosen,
                  "stored_bytes": d.stored_bytes, "bits_per_weight": d.bits_per_weight,
                  "attempts": [{"method": a.method, "bytes": a.stored_bytes, "loss": a.value,
                                "accepted": a.accepted, "encode_s": a.encode_seconds} for a in d.attempts]}
                 for d in plan.decisions]
    return {"stages": stages, "decisions": decisions, "entropy_saved_bytes": entropy_saved,
            "loss_limit": plan.limit, "stage_table": plan.stage_table()}


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
    decoded: ForgeForCausalLM | None = None
    decode_seconds: float = 0.0


class FinalPhase(Phase):
    """Phase 8: plan, write, decode, verify, measure."""

    name = "final"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> FinalRun:
        section: FinalSection = ctx.phase_config
        data = session_data(ctx)
        model = load_model(inputs[0])
        codec = ModelCodecConfig(ctx.config.bitnet.pack_format, section.float_dtype)
        tensors, layout = model_tensors(model, codec)
        run = FinalRun(inputs=inputs, data=data, model=model, tensors=tensors, layout=layout,
                       fp32_bytes=parameter_count(model) * 4)
        run.bar = run.closing.enter_context(ctx.progress.task("final: compress", total=4))
        return run

    def measure_before(self, ctx: PhaseContext, run: FinalRun) -> EvalRecord:
        """The input's record, its size that of its tensors in the codec's storage types."""
        packed_mb = sum(t.numel() * t.element_size() for t in run.tensors.values()) / 1e6
        before = eval_record(run.model, run.data.heldout, run.inputs[0].size_mb or packed_mb)  # the input's one size
        run.bar.advance()
        return before

    def work(self, ctx: PhaseContext, run: FinalRun) -> None:
        """Plan the compression under the quality budget, then decode the container and verify it."""
        run.plan = self._plan(ctx.phase_config, run.model, run.tensors, run.layout, run.data.heldout,
                              run.before.loss)
        run.bar.advance()
        run.decoded, run.decode_seconds = self._decode_and_verify(run.plan)
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
        return self._finish(ctx, run.inputs[0], run.plan, run.layout, run.decoded, run.data.tokenizer, run.before,
                            run.after, run.fp32_bytes, timings)

    def _plan(self, section: FinalSection, model: ForgeForCausalLM, tensors: dict[str, Tensor],
              layout: ModelLayout, heldout: HeldoutSet, input_loss: float) -> PlanResult:
        skeleton = ForgeForCausalLM(model.config).eval()

        def evaluate(candidate: Mapping[str, Tensor]) -> float:
            return heldout_loss(load_tensors_into(skeleton, candidate, layout), heldout)

        config = PlannerConfig(max_increase=section.max_ppl_increase, evaluator_kind="loss",
                               zstd_level=section.zstd_level, min_lossy_numel=section.min_lossy_numel)
        metadata = {"layout": layout.to_json(), "model_config": json.loads(model.config.to_json_string())}
        return plan_compression(tensors, evaluate, candidates(section), config, reference=input_loss,
                                metadata=metadata)

    def _decode_and_verify(self, plan: PlanResult) -> tuple[ForgeForCausalLM, float]:
        """Decode the container bytes and compare with the in-memory reconstruction (and time the decoder)."""
        start = time.perf_counter()
        metadata = read_metadata(plan.compressed.data)
        decoded = rebuild(decode_container(plan.compressed.data), metadata)
        seconds = time.perf_counter() - start
        _verify_bit_exact(decoded, rebuild(plan.compressed.reconstruction, metadata))
        return decoded, seconds

    def _finish(self, ctx: PhaseContext, parent: ModelRef, plan: PlanResult, layout: ModelLayout,
                decoded: ForgeForCausalLM, tokenizer: ForgeTokenizer, before: Any, after: Any,
                fp32_bytes: int, timings: dict[str, float]) -> PhaseResult:
        stages = stage_table(plan, fp32_bytes, before.loss)
        entropy_saved = sum(s.saved_bytes for item in plan.compressed.tensors.values()
                            for s in item.streams.values())
        size = len(plan.compressed.data)
        metadata: dict[str, Any] = {
            "ppl_increase": after.perplexity / before.perplexity - 1.0,
            "compression_ratio": fp32_bytes / size, "size_mb": size / 1e6, "stages": stages,
            "compressed_file": COMPRESSED_FILE,
            "methods": {d.name: d.chosen for d in plan.decisions if d.chosen != "raw"},
        }
        if layout.ternary:
            metadata["bitlinear"] = bitlinear_meta(decoded, BitLinearConfig(**layout.bitlinear))
        metrics: dict[str, Any] = {**record_metrics("before", before), **record_metrics("after", after)}
        metrics.update({k: metadata[k] for k in ("ppl_increase", "compression_ratio", "size_mb")})
        metrics.update({f"stage/{name}/{k}": v for name, row in stages.items() for k, v in row.items()})
        metrics.update({"entropy_saved_bytes": entropy_saved, **timings})
        for step, (name, row) in enumerate(stages.items()):
            ctx.log(step, {"bytes": row["bytes"], "ratio": row["ratio"], "perplexity": row["perplexity"]},
                    model=f"stage:{name}")
        report = _report(plan, stages, entropy_saved)
        writer = _writer(plan.compressed.data, decoded, tokenizer, report)
        ref = ctx.save_model("final", writer, metadata, metrics=metrics, parameters=parameter_count(decoded),
                             parents=[parent.model_id])
        if ctx.is_main:  # the file as written decodes to the model that was measured
            _verify_bit_exact(decode_file(ref.path / COMPRESSED_FILE), decoded)
        return PhaseResult(True, self.name, [ref], metrics, artifacts={"report": report},
                           duration_seconds=timings["seconds"], before=before, after=after)
