"""Phase 7, Edge: export the model for edge runtimes and prove the exports compute what PyTorch computes.

Recipe: load the Phase 6 model and measure it (D6 before); export the formats of ``phase7.formats`` into
the session's bundle folder: ONNX (fixed-length full-sequence graph, fp32 and the onnxruntime dynamic int8
variant) and the packed ternary weights with the standalone numpy runtime; profile every format at batch 1
(prefill, decode per token, peak RSS delta, file size); compare each with PyTorch on held-out rows (max
abs logit difference, top-1 and greedy agreement); write README and manifest (sha256 of every file) and
verify the folder as a loader would.

D6 before: PyTorch on the held-out set, with its model file size and the PyTorch decode latency of the
profile (the same measurement as every format's). D6 after: the held-out evaluation of the ternary runtime
itself (numpy, from the bundle's packed file, batched through ``eval.evaluate``), with its file size and
decode latency; without a ternary format, the PyTorch model the ONNX graph was traced from, with the ONNX
file size and decode latency (``after/source`` says which). The registered "edge" model is the input
model unchanged (Phase 8 starts from it); the bundle is a derived artifact in
``workspace.bundle_dir(session)``, replaced atomically.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from agent_forge.config.schema import Phase7Section
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
from agent_forge.export.evaluation import RuntimeLM
from agent_forge.export.runtime.manifest import MANIFEST, sha256_file
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import load_model, model_writer
from agent_forge.phases.common import (
    eval_record,
    parameter_count,
    record_metrics,
    record_of,
    session_data,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult
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
    return out


class EdgePhase(Phase):
    """ONNX and packed-ternary exports, checked against PyTorch, profiled, sealed in a bundle."""

    name = "edge"

    def run(self, ctx: PhaseContext, inputs: list[ModelRef]) -> PhaseResult:
        start = time.perf_counter()
        section: Phase7Section = ctx.phase_config
        data = session_data(ctx)
        source = inputs[0]
        model = load_model(source)
        threads = section.threads or torch.get_num_threads()
        torch_file = source.path / "model.safetensors"
        with blas_threads(threads):
            before = eval_record(model, data.heldout, torch_file.stat().st_size / 1e6, latency=False)
            report = self._bundle(ctx, source, model, data.tokenizer.to_json(), data.heldout, section, threads)
            before.latency_ms = report.profile[TORCH].decode_ms_per_token
            after, after_source = self._after(report, model, data.heldout)
        metrics = {**record_metrics("before", before), **record_metrics("after", after), **format_metrics(report),
                   "after/source": after_source, "bundle/size_mb": bundle_bytes(report.folder) / 1e6}
        metrics.update(_speedup(report))
        metadata = self._metadata(ctx, source, report, after, after_source)
        metrics["phase/duration_seconds"] = time.perf_counter() - start
        writer = self._writer(model, data.tokenizer, report, metadata["bundle_path"])
        ref = ctx.save_model("edge", writer, metadata, metrics, parameters=parameter_count(model),
                             parents=[source.model_id])
        return PhaseResult(True, self.name, [ref], metrics, artifacts={"bundle": str(report.folder)},
                           duration_seconds=time.perf_counter() - start, before=before, after=after)

    def _bundle(self, ctx: PhaseContext, source: ModelRef, model: ForgeForCausalLM, tokenizer_json: str,
                heldout: HeldoutSet, section: Phase7Section, threads: int) -> EdgeReport:
        rows, prompts, tokens = heldout_inputs(heldout, section)
        target = ctx.workspace.bundle_dir(ctx.session_id)
        recover_dir(target)  # a run killed mid-swap leaves the old or new bundle complete, plus temporaries
        edge_inputs = EdgeInputs(model, tokenizer_json, rows, prompts, tokens, [source.path / "model.safetensors"],
                                 lambda: load_model(source), {"source_model": source.model_id,
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
        }
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
