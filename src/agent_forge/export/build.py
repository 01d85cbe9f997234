"""Build a deployment bundle: export the formats, profile them, check them against PyTorch, seal the folder.

Shared by the Edge phase and ``agent-forge export``: the caller hands over the PyTorch model, its
tokenizer, held-out rows and prompts, and an empty folder (which it makes atomic); everything measured
here lands in the manifest and the README. Each format is loaded once, by its profile (so load time and
memory are measured), and the agreement check then runs on that very object.

The ONNX int8 variant is a candidate, not a given: it is built (weight-only int8, the embedding table and
the output head kept in fp32, ``INT8_KEEP_FLOAT``), its greedy decoding is compared with the fp32 graph's on
the agreement prompts, and it is shipped only when it reproduces at least ``min_int8_greedy_match`` of
those tokens. Otherwise its file is removed and the manifest says why, with the figure.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from agent_forge.export import bundle as bundle_io
from agent_forge.export.agreement import (
    Agreement,
    Reference,
    measure_agreement,
    reference_outputs,
    torch_greedy,
    torch_logits,
)
from agent_forge.export.onnx import DEFAULT_OPSET, OnnxExport, OnnxRunner, export_onnx, quantize_int8_weights
from agent_forge.export.profile import (
    MEMORY_METHOD,
    FormatProfile,
    FormatSpec,
    OnnxStepper,
    RuntimeStepper,
    Stepper,
    TorchStepper,
    profile_format,
)
from agent_forge.export.runtime import ForgeRuntimeModel, RuntimeConfig, load_weights
from agent_forge.export.ternary import activation_settings, export_ternary

if TYPE_CHECKING:
    from agent_forge.config.schema import EdgeSection
    from agent_forge.eval.heldout import HeldoutSet

TORCH, RUNTIME = "pytorch_fp32", "ternary_runtime"
INT8_KEEP_FLOAT = ("embed_tokens", "lm_head")  # in int8, these cost 0.28 greedy match on the default run
INT8_RECIPE = "weight-only int8, one scale per output channel; embedding and lm_head kept fp32"


@dataclass
class EdgeOptions:
    formats: Sequence[str] = ("onnx", "ternary")
    onnx_int8: bool = True
    min_int8_greedy_match: float = 0.9  # share of the fp32 graph's greedy tokens the int8 graph must reproduce
    ternary_format: str = "tq2_0"
    float_dtype: str = "float16"
    int8_embeddings: bool = False
    prefill_lengths: Sequence[int] = (128, 512)
    decode_tokens: int = 32
    agreement_tokens: int = 64
    profile_repeats: int = 3
    threads: int = 1


@dataclass
class EdgeInputs:
    model: nn.Module
    tokenizer_json: str
    rows: list[list[int]]
    prompts: list[list[int]]
    profile_tokens: list[int]
    torch_files: list[Path]
    load_torch: Callable[[], nn.Module]
    source: dict[str, Any] = field(default_factory=dict)


@dataclass
class EdgeReport:
    folder: Path
    agreement: dict[str, Agreement]
    profile: dict[str, FormatProfile]
    seconds: dict[str, float]
    manifest: dict[str, Any]
    runtime_model: ForgeRuntimeModel | None = None
    int8_decision: dict[str, Any] | None = None
    format_files: dict[str, list[str]] = field(default_factory=dict)  # each exported format's files

    def primary(self) -> str:
        return RUNTIME if RUNTIME in self.profile else next(reversed(self.profile))


def edge_options(section: EdgeSection, threads: int) -> EdgeOptions:
    """The ``edge`` settings as bundle options (the Edge phase and ``agent-forge export`` alike)."""
    return EdgeOptions(formats=tuple(section.formats), onnx_int8=section.onnx_int8,
                       ternary_format=section.ternary_format, float_dtype=section.float_dtype,
                       int8_embeddings=section.embedding_bits == 8, prefill_lengths=tuple(section.prefill_lengths),
                       decode_tokens=section.decode_tokens, agreement_tokens=section.agreement_tokens,
                       profile_repeats=section.profile_repeats, threads=threads)


def heldout_inputs(heldout: HeldoutSet, section: EdgeSection) -> tuple[list[list[int]], list[list[int]],
                                                                          list[int]]:
    """Rows for the logits check, prompts (up to the answer) for greedy agreement, a profile token stream."""
    rows = [list(r) for r in heldout.lm_rows[: section.agreement_rows]]
    prompts = [list(t[:s]) for t, s in zip(heldout.qa_tokens, heldout.qa_answer_start, strict=True)]
    prompts = prompts[: section.agreement_prompts] or [r[: max(len(r) // 2, 1)] for r in rows[:1]]
    stream = [t for r in heldout.lm_rows for t in r] or [1]
    need = max(section.prefill_lengths) + section.decode_tokens + 2
    return rows, prompts, (stream * (need // len(stream) + 1))[:need]


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """One thread count for torch, onnxruntime (set on its sessions) and numpy's BLAS.

    On a busy machine, BLAS threads that outnumber free cores spin and slow small matmuls many times over.
    """
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    try:
        if threadpool_limits is None:
            yield
        else:
            with threadpool_limits(limits=threads):
                yield
    finally:
        torch.set_num_threads(saved)


def _onnx_specs(model: nn.Module, inputs: EdgeInputs, folder: Path, options: EdgeOptions,
                decision: dict[str, Any]) -> list[FormatSpec]:
    info = export_onnx(model, folder / bundle_io.ONNX_FP32)
    paths = {"onnx_fp32": info.path}
    if options.onnx_int8:
        decision.update(_int8_candidate(info, inputs, folder, options))
        if decision["shipped"]:
            paths["onnx_int8"] = folder / bundle_io.ONNX_INT8
    note = f"fixed length {info.seq_len}, no cache: a decode step re-runs the window"
    threads = options.threads
    return [FormatSpec(name, [path], lambda p=path: OnnxStepper(OnnxRunner(p, info.seq_len, threads)),
                       info.seq_len, note) for name, path in paths.items()]


def _int8_candidate(info: OnnxExport, inputs: EdgeInputs, folder: Path, options: EdgeOptions) -> dict[str, Any]:
    """Build the int8 graph, measure it against the fp32 graph, keep it only when it passes the bar."""
    path = quantize_int8_weights(info.path, folder / bundle_io.ONNX_INT8, INT8_KEEP_FLOAT)
    rows, prompts, n_tokens = _agreement_inputs(inputs, options, info.seq_len)
    fp32, int8 = OnnxRunner(info.path, info.seq_len, options.threads), OnnxRunner(path, info.seq_len, options.threads)
    reference = Reference([fp32.logits(r) for r in rows], [fp32.greedy(p, n_tokens) for p in prompts])
    versus = measure_agreement(reference, int8.logits, rows, prompts, n_tokens)
    shipped = versus.greedy_match >= options.min_int8_greedy_match
    decision = {"shipped": shipped, "recipe": INT8_RECIPE, "threshold": options.min_int8_greedy_match,
                "greedy_match_vs_fp32": versus.greedy_match, "greedy_tokens": versus.greedy_tokens,
                "top1_agreement_vs_fp32": versus.top1_agreement, "max_abs_diff_vs_fp32": versus.max_abs_diff,
                "bytes": path.stat().st_size, "fp32_bytes": info.bytes}
    if not shipped:
        path.unlink()
        decision["reason"] = (f"greedy decoding of the int8 graph reproduced {versus.greedy_match:.3f} of the "
                              f"fp32 graph's {versus.greedy_tokens} tokens, under the "
                              f"{options.min_int8_greedy_match} required to ship it")
    return decision


def _ternary_spec(model: nn.Module, folder: Path, options: EdgeOptions) -> FormatSpec:
    path = export_ternary(model, folder, options.ternary_format, options.float_dtype, options.int8_embeddings)
    settings = activation_settings(model)
    config = RuntimeConfig.from_dict(model.config.to_dict())

    def load() -> RuntimeStepper:
        return RuntimeStepper(ForgeRuntimeModel(load_weights(path, settings.bits, settings.eps), config))

    return FormatSpec(RUNTIME, [path], load, None, "numpy runtime with KV/memory cache" + _beyond(model, options))


def _beyond(model: nn.Module, options: EdgeOptions) -> str:
    """Formats without a length limit run prefills longer than the trained context; say so."""
    limit = int(model.config.max_seq_len)
    longer = [n for n in options.prefill_lengths if n > limit]
    if not longer:
        return ""
    return (f"; prefill {longer} exceeds max_seq_len {limit}: it runs (sliding window, streaming memory) "
            "but lies outside the trained length")


def _export(model: nn.Module, inputs: EdgeInputs, options: EdgeOptions, folder: Path, seconds: dict[str, float],
            decision: dict[str, Any]) -> dict[str, FormatSpec]:
    specs: list[FormatSpec] = []
    if "onnx" in options.formats:
        start = time.perf_counter()
        specs += _onnx_specs(model, inputs, folder, options, decision)
        seconds["export_onnx"] = time.perf_counter() - start
    if "ternary" in options.formats:
        start = time.perf_counter()
        specs.append(_ternary_spec(model, folder, options))
        seconds["export_ternary"] = time.perf_counter() - start
    if not specs:
        raise ValueError(f"no known export format in {list(options.formats)}; use onnx and/or ternary")
    return {s.name: s for s in specs}


def _settings(model: nn.Module, options: EdgeOptions, specs: dict[str, FormatSpec]) -> dict[str, Any]:
    """runtime.json: what a loader needs to know about the files of the bundle."""
    config, acts = model.config, activation_settings(model)
    settings: dict[str, Any] = {
        "formats": sorted(specs), "activation_bits": acts.bits, "activation_eps": acts.eps,
        "ternary_layers": acts.ternary_layers, "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id, "weights": None,
    }
    if RUNTIME in specs:
        settings.update(weights=specs[RUNTIME].files[0].name, ternary_format=options.ternary_format,
                        float_dtype=options.float_dtype, int8_embeddings=options.int8_embeddings)
    if "onnx_fp32" in specs:
        int8 = bundle_io.ONNX_INT8 if "onnx_int8" in specs else None
        settings["onnx"] = {"fp32": bundle_io.ONNX_FP32, "int8": int8, "seq_len": specs["onnx_fp32"].max_length,
                            "opset": DEFAULT_OPSET, "input": "input_ids", "output": "logits", "batch": 1,
                            "mode": "full-sequence, fixed length, right-padded, no cache"}
    return settings


def build_edge_bundle(inputs: EdgeInputs, options: EdgeOptions, folder: Path) -> EdgeReport:
    """Export every requested format into ``folder``, profile it, check it against PyTorch, seal it."""
    folder, seconds, decision = Path(folder), {}, {}
    model = inputs.model.eval()
    specs = _export(model, inputs, options, folder, seconds, decision)
    bundle_io.write_base_files(folder, model.config, inputs.tokenizer_json, _settings(model, options, specs))
    torch_spec = FormatSpec(TORCH, inputs.torch_files, lambda: TorchStepper(inputs.load_torch()), None,
                            "PyTorch eager with the model's cache" + _beyond(model, options))
    with blas_threads(options.threads):
        start = time.perf_counter()
        profile, loaded = {}, {}
        for spec in [torch_spec, *specs.values()]:
            profile[spec.name], loaded[spec.name] = profile_format(
                spec, inputs.profile_tokens, list(options.prefill_lengths), options.decode_tokens,
                options.profile_repeats, options.threads)
        seconds["profile"] = time.perf_counter() - start
        start = time.perf_counter()
        agreement = _agreement(model, inputs, options, {n: loaded[n] for n in specs}, specs)
        seconds["agreement"] = time.perf_counter() - start
    summary = _summary(inputs, options, agreement, profile, model)
    if decision:
        summary["onnx_int8"] = decision
    manifest = bundle_io.finalize_bundle(folder, summary)
    runtime = loaded[RUNTIME].model if RUNTIME in loaded else None
    files = {name: [p.name for p in spec.files] for name, spec in specs.items()}
    return EdgeReport(folder, agreement, profile, seconds, manifest, runtime, decision or None, files)


def _cap(sequences: list[list[int]], length: int) -> list[list[int]]:
    return [s[-length:] for s in sequences if s]


def _agreement_inputs(inputs: EdgeInputs, options: EdgeOptions, limit: int | None
                      ) -> tuple[list[list[int]], list[list[int]], int]:
    """Rows, prompts and greedy length that fit a fixed input length ``limit`` (None: no limit)."""
    if limit is None:
        return inputs.rows, inputs.prompts, options.agreement_tokens
    n_tokens = min(options.agreement_tokens, limit - 1)
    return _cap(inputs.rows, limit), _cap(inputs.prompts, limit - n_tokens + 1), n_tokens


def _agreement(model: nn.Module, inputs: EdgeInputs, options: EdgeOptions, loaded: dict[str, Stepper],
               specs: dict[str, FormatSpec]) -> dict[str, Agreement]:
    """Rows and prompts cut to the shortest fixed input length, so every format sees the same tokens."""
    limit = min((s.max_length for s in specs.values() if s.max_length), default=None)
    rows, prompts, n_tokens = _agreement_inputs(inputs, options, limit)
    reference = reference_outputs(torch_logits(model), torch_greedy(model), rows, prompts, n_tokens)
    return {name: measure_agreement(reference, stepper.logits, rows, prompts, n_tokens)
            for name, stepper in loaded.items()}


def _summary(inputs: EdgeInputs, options: EdgeOptions, agreement: dict[str, Agreement],
             profile: dict[str, FormatProfile], model: nn.Module) -> dict[str, Any]:
    return {
        **inputs.source, "formats": sorted(agreement), "threads": options.threads,
        "trm_t_max": int(model.config.trm_t_max), "memory_method": MEMORY_METHOD,
        "agreement": {k: v.to_dict() for k, v in agreement.items()},
        "profile": {k: v.to_dict() for k, v in profile.items()},
        "agreement_inputs": {"rows": len(inputs.rows), "prompts": len(inputs.prompts),
                             "greedy_tokens": options.agreement_tokens},
    }
