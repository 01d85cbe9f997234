"""Phase 7, Edge: export the model for edge runtimes and prove the exports compute what PyTorch computes.

Recipe: load the Phase 6 model and measure it (D6 before); export the formats of ``edge.formats`` into
the session's bundle folder: ONNX (fixed-length full-sequence graph in fp32, plus a weight-only int8 graph
shipped only when its greedy decoding follows the fp32 graph's) and the packed ternary weights with the
standalone numpy runtime; profile every format at batch 1 (prefill, decode per token, peak RSS delta, file
size); compare each with PyTorch on held-out rows (max abs logit difference, top-1 and greedy agreement);
write the model card (README, from the registry) and manifest (sha256 of every file) and verify the folder
as a loader would.

D6 before: PyTorch on the held-out set, with the input's size (``storage.artifacts.weights_size``) and
the PyTorch decode latency of the profile (the same measurement as every format's). D6 after: the
held-out evaluation of the ternary runtime itself (numpy, from the bundle's packed file, batched through
``eval.evaluate``), with its file size and decode latency; without a ternary format, the PyTorch model the
ONNX graph was traced from, with the ONNX file size and decode latency (``after/source`` says which). The
registered "edge" model is the input model unchanged (Phase 8 starts from it); the bundle is a derived
artifact in ``workspace.bundle_dir(session)``, replaced atomically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from agent_forge.config.schema import EdgeSection
from agent_forge.eval.heldout import HeldoutSet, evaluate
from agent_forge.export.build import (
    TORCH,
    EdgeInputs,
    EdgeReport,
    blas_threads,
    build_edge_bundle,
    edge_options,
    heldout_inputs,
)
from agent_forge.export.bundle import bundle_bytes, verify_bundle
from agent_forge.export.card import gather_card
from agent_forge.export.evaluation import RuntimeLM
from agent_forge.export.runtime.manifest import MANIFEST, sha256_file
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import load_model, model_writer
from agent_forge.phases.common import (
    SessionData,
    eval_record,
    parameter_count,
    record_metrics,
    record_of,
    session_data,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.storage.atomic import atomic_dir, atomic_write_json, recover_dir

REPORT_FILE = "edge_report.json"


def runtime_record(report: EdgeReport, heldout: HeldoutSet, size_mb: float, latency_ms: float) -> EvalRecord:
    """D6 after, measured on the exported numpy runtime itself."""
    result = evaluate(RuntimeLM(report.runtime_model), heldout)
    return record_of(result, heldout, size_mb, latency_ms)


def format_metrics(report: EdgeReport) -> dict[str, float]:
    """Flat per-format figures: agreement, file size, latencies, memory."""
    out: dict[str, float] = {}
    for name, agreement in report.agreement.items():
        out.update({f"{name}/{k}": float(v) for k, v in agreement.to_dict().items()})
    for name, prof in report.profile.items():
        out[f"{name}/file_mb"] = prof.file_bytes / 1e6
        out[f"{name}/decode_ms_per_token"] = prof.decode_ms_per_token
        out[f"{name}/load_ms"] = prof.load_ms
        out.update({f"{name}/prefill_{n}_ms": v for n, v in prof.prefill_ms.items() if v is not None})
        if prof.peak_rss_delta_mb is not None:
            out[f"{name}/peak_rss_delta_mb"] = prof.peak_rss_delta_mb
    out.update({f"time/{k}_seconds": v for k, v in report.seconds.items()})
    if report.int8_decision is not None:  # the int8 graph's own check against the fp32 graph, shipped or not
        decision = report.int8_decision
        out.update({"onnx_int8/shipped": float(decision["shipped"]),
                    "onnx_int8/greedy_match_vs_fp32": decision["greedy_match_vs_fp32"],
                    "onnx_int8/top1_agreement_vs_fp32": decision["top1_agreement_vs_fp32"]})
    return out


@dataclass(kw_only=True)
class EdgeRun(PhaseRun):
    data: SessionData
    model: ForgeForCausalLM
    threads: int
    report: EdgeReport | None = None
    after_source: str = ""


class EdgePhase(Phase):
    """ONNX and packed-ternary exports, checked against PyTorch, profiled, sealed in a bundle."""

    name = "edge"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> EdgeRun:
        section: EdgeSection = ctx.phase_config
        data = session_data(ctx)
        model = load_model(inputs[0])
        return EdgeRun(inputs=inputs, data=data, model=model, threads=section.threads or torch.get_num_threads())

    def measure_before(self, ctx: PhaseContext, run: EdgeRun) -> EvalRecord:
        """The PyTorch model's record; its decode latency comes from the bundle's profile (in ``work``)."""
        torch_file = run.inputs[0].path / "model.safetensors"
        with blas_threads(run.threads):
            return eval_record(run.model, run.data.heldout, run.inputs[0].size_mb or torch_file.stat().st_size / 1e6,
                               latency=False)  # the input's one size (registry, show, report)

    def work(self, ctx: PhaseContext, run: EdgeRun) -> None:
        with blas_threads(run.threads):
            run.report = self._bundle(ctx, run.inputs[0], run.model, run.data.tokenizer.to_json(),
                                      run.data.heldout, ctx.phase_config, run.threads)
        run.before.latency_ms = run.report.profile[TORCH].decode_ms_per_token

    def measure_after(self, ctx: PhaseContext, run: EdgeRun) -> EvalRecord:
        with blas_threads(run.threads):
            after, run.after_source = self._after(run.report, run.model, run.data.heldout)
        return after

    def save(self, ctx: PhaseContext, run: EdgeRun) -> PhaseResult:
        source, report, after = run.inputs[0], run.report, run.after
        metrics = {**record_metrics("before", run.before), **record_metrics("after", after),
                   **format_metrics(report),
                   "after/source": run.after_source, "bundle/size_mb": bundle_bytes(report.folder) / 1e6}
        metrics.update(_speedup(report))
        metadata = self._metadata(ctx, source, report, after, run.after_source)
        metrics["phase/duration_seconds"] = run.seconds
        writer = self._writer(run.model, run.data.tokenizer, report, metadata["bundle_path"])
        ref = ctx.save_model("edge", writer, metadata, metrics, parameters=parameter_count(run.model),
                             parents=[source.model_id])
        return PhaseResult(True, self.name, [ref], metrics, artifacts={"bundle": str(report.folder)},
                           duration_seconds=run.seconds, before=run.before, after=after)

    def _bundle(self, ctx: PhaseContext, source: ModelRef, model: ForgeForCausalLM, tokenizer_json: str,
                heldout: HeldoutSet, section: EdgeSection, threads: int) -> EdgeReport:
        rows, prompts, tokens = heldout_inputs(heldout, section)
        target = ctx.workspace.bundle_dir(ctx.session_id)
        recover_dir(target)  # a run killed mid-swap leaves the old or new bundle complete, plus temporaries
        card = gather_card(ctx.registry, source.model_id)  # the model card: README.md of the bundle
        edge_inputs = EdgeInputs(model, tokenizer_json, rows, prompts, tokens, [source.path / "model.safetensors"],
                                 lambda: load_model(source), {"source_model": source.model_id, "card": card,
                                                              "session_id": ctx.session_id, "bundle_name": target.name})
        with atomic_dir(target) as tmp:
            report = build_edge_bundle(edge_inputs, edge_options(section, threads), tmp)
        report.folder = target
        verify_bundle(target)
        return report

    def _after(self, report: EdgeReport, model: ForgeForCausalLM, heldout: HeldoutSet) -> tuple[EvalRecord, str]:
        primary = report.profile[report.primary()]
        size_mb, latency = primary.file_bytes / 1e6, primary.decode_ms_per_token
        if report.runtime_model is not None:
            return runtime_record(report, heldout, size_mb, latency), "ternary_runtime"
        record = eval_record(model, heldout, size_mb, latency=False)
        record.latency_ms = latency
        return record, f"pytorch_model_of_{report.primary()}"

    def _metadata(self, ctx: PhaseContext, source: ModelRef, report: EdgeReport, after: EvalRecord,
                  after_source: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "size_mb": after.size_mb, "latency_ms": after.latency_ms, "primary_format": report.primary(),
            "formats": sorted(report.agreement),
            "bundle_path": report.folder.relative_to(ctx.workspace.root).as_posix(),  # the workspace may move
            "bundle_manifest_sha256": sha256_file(report.folder / MANIFEST), "after_source": after_source,
            "perplexity": after.perplexity, "accuracy": after.accuracy,
            "size_file": "bundle/" + "+".join(report.format_files.get(report.primary(), [])),
        }
        if report.int8_decision is not None:
            metadata["onnx_int8_shipped"] = report.int8_decision["shipped"]
            metadata["onnx_int8_greedy_match_vs_fp32"] = report.int8_decision["greedy_match_vs_fp32"]
        for name, agreement in report.agreement.items():
            metadata[f"max_abs_diff_{name}"] = agreement.max_abs_diff
            metadata[f"greedy_match_{name}"] = agreement.greedy_match
        if source.metadata.get("bitlinear"):
            metadata["bitlinear"] = source.metadata["bitlinear"]
        return metadata

    def _writer(self, model: ForgeForCausalLM, tokenizer: Any, report: EdgeReport, bundle_path: str) -> Any:
        write_model = model_writer(model, tokenizer)
        summary = {k: v for k, v in report.manifest.items() if k != "files"}

        def write(folder: Any) -> None:
            write_model(folder)
            atomic_write_json(folder / REPORT_FILE, {**summary, "bundle_path": bundle_path,
                                                     "seconds": report.seconds})

        return write


def _speedup(report: EdgeReport) -> dict[str, float]:
    """Decode speed of each format relative to PyTorch fp32 (>1: faster)."""
    torch_ms = report.profile[TORCH].decode_ms_per_token
    return {f"{name}/decode_speedup_vs_pytorch": torch_ms / p.decode_ms_per_token
            for name, p in report.profile.items()
            if name != TORCH and p.decode_ms_per_token > 0 and math.isfinite(torch_ms)}
