"""Build a deployment bundle: export the formats, measure agreement with PyTorch, profile, write manifest.

Shared by the Edge phase and ``agent-forge export``: the caller hands over the PyTorch model, its
tokenizer, held-out rows and prompts, and an empty folder (which it makes atomic); everything measured
here lands in the manifest and the README.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent_forge.export import bundle as bundle_io
from agent_forge.export.agreement import (
    Agreement,
    GreedyFn,
    LogitsFn,
    measure_agreement,
    reference_outputs,
    torch_greedy,
    torch_logits,
)
from agent_forge.export.onnx import DEFAULT_OPSET, OnnxRunner, export_onnx, quantize_int8
from agent_forge.export.profile import (
    MEMORY_METHOD,
    FormatProfile,
    FormatSpec,
    OnnxStepper,
    RuntimeStepper,
    TorchStepper,
    profile_format,
)
from agent_forge.export.runtime import ForgeRuntimeModel, RuntimeConfig, greedy_generate, load_weights
from agent_forge.export.ternary import activation_settings, export_ternary

TORCH = "pytorch_fp32"


@dataclass
class EdgeOptions:
    formats: Sequence[str] = ("onnx", "ternary")
    onnx_int8: bool = True
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
class ExportedFormat:
    spec: FormatSpec
    logits: LogitsFn
    greedy: GreedyFn
    seconds: float


@dataclass
class EdgeReport:
    folder: Path
    agreement: dict[str, Agreement]
    profile: dict[str, FormatProfile]
    seconds: dict[str, float]
    manifest: dict[str, Any]
    runtime_model: ForgeRuntimeModel | None = None

    def primary(self) -> str:
        return "ternary_runtime" if "ternary_runtime" in self.profile else next(reversed(self.profile))


def _onnx_formats(model: nn.Module, folder: Path, options: EdgeOptions) -> dict[str, ExportedFormat]:
    threads = options.threads
    start = time.perf_counter()
    info = export_onnx(model, folder / bundle_io.ONNX_FP32)
    paths = {"onnx_fp32": info.path}
    if options.onnx_int8:
        paths["onnx_int8"] = quantize_int8(info.path, folder / bundle_io.ONNX_INT8)
    seconds = time.perf_counter() - start
    out = {}
    for name, path in paths.items():
        runner = OnnxRunner(path, info.seq_len, threads)
        note = f"fixed length {info.seq_len}, no cache: a decode step re-runs the window"
        spec = FormatSpec(name, [path], lambda p=path: OnnxStepper(OnnxRunner(p, info.seq_len, threads)),
                          info.seq_len, note)
        out[name] = ExportedFormat(spec, runner.logits, runner.greedy, seconds)
    return out


def _ternary_format(model: nn.Module, folder: Path, options: EdgeOptions) -> tuple[ExportedFormat, Any]:
    start = time.perf_counter()
    path = export_ternary(model, folder, options.ternary_format, options.float_dtype, options.int8_embeddings)
    settings = activation_settings(model)
    config = RuntimeConfig.from_dict(model.config.to_dict())

    def load() -> ForgeRuntimeModel:
        return ForgeRuntimeModel(load_weights(path, settings.bits, settings.eps), config)

    runtime = load()

    def logits(ids: list[int]) -> Any:
        return runtime.forward(ids)[0]

    def greedy(prompt: list[int], n: int) -> list[int]:
        return greedy_generate(runtime, prompt, n, eos_id=None)

    spec = FormatSpec("ternary_runtime", [path], lambda: RuntimeStepper(load()), None,
                      "numpy runtime with KV/memory cache")
    return ExportedFormat(spec, logits, greedy, time.perf_counter() - start), runtime


def _settings(model: nn.Module, options: EdgeOptions, formats: dict[str, ExportedFormat]) -> dict[str, Any]:
    config = model.config
    acts = activation_settings(model)
    settings: dict[str, Any] = {
        "formats": sorted(formats), "activation_bits": acts.bits, "activation_eps": acts.eps,
        "ternary_layers": acts.ternary_layers, "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id, "weights": None,
    }
    if "ternary_runtime" in formats:
        settings["weights"] = formats["ternary_runtime"].spec.files[0].name
        settings["ternary_format"] = options.ternary_format
        settings["float_dtype"] = options.float_dtype
    if "onnx_fp32" in formats:
        int8 = bundle_io.ONNX_INT8 if options.onnx_int8 else None
        settings["onnx"] = {"fp32": bundle_io.ONNX_FP32, "int8": int8,
                            "seq_len": formats["onnx_fp32"].spec.max_length, "opset": DEFAULT_OPSET,
                            "input": "input_ids", "output": "logits", "batch": 1,
                            "mode": "full-sequence, fixed length, right-padded, no cache"}
    return settings


def _cap(sequences: list[list[int]], length: int) -> list[list[int]]:
    return [s[-length:] for s in sequences if s]


def build_edge_bundle(inputs: EdgeInputs, options: EdgeOptions, folder: Path) -> EdgeReport:
    """Export every requested format into ``folder``, check it against PyTorch, profile it, seal it."""
    folder, seconds, formats, runtime = Path(folder), {}, {}, None
    model = inputs.model.eval()
    if "onnx" in options.formats:
        formats.update(_onnx_formats(model, folder, options))
        seconds["export_onnx"] = next(iter(formats.values())).seconds
    if "ternary" in options.formats:
        formats["ternary_runtime"], runtime = _ternary_format(model, folder, options)
        seconds["export_ternary"] = formats["ternary_runtime"].seconds
    if not formats:
        raise ValueError(f"no known export format in {list(options.formats)}; use onnx and/or ternary")
    settings = _settings(model, options, formats)
    bundle_io.write_base_files(folder, model.config, inputs.tokenizer_json, settings)
    start = time.perf_counter()
    agreement = _agreement(model, inputs, options, formats)
    seconds["agreement"] = time.perf_counter() - start
    start = time.perf_counter()
    profile = _profile(inputs, options, formats)
    seconds["profile"] = time.perf_counter() - start
    summary = _summary(inputs, options, agreement, profile, model)
    manifest = bundle_io.finalize_bundle(folder, summary)
    return EdgeReport(folder, agreement, profile, seconds, manifest, runtime)


def _agreement(model: nn.Module, inputs: EdgeInputs, options: EdgeOptions,
               formats: dict[str, ExportedFormat]) -> dict[str, Agreement]:
    limit = min((f.spec.max_length for f in formats.values() if f.spec.max_length), default=None)
    n_tokens = options.agreement_tokens
    if limit is not None:
        n_tokens = min(n_tokens, limit - 1)
    rows = _cap(inputs.rows, limit) if limit else inputs.rows
    prompts = _cap(inputs.prompts, (limit - n_tokens) if limit else 1 << 30)
    reference = reference_outputs(torch_logits(model), torch_greedy(model), rows, prompts, n_tokens)
    return {name: measure_agreement(reference, f.logits, f.greedy, rows, prompts, n_tokens)
            for name, f in formats.items()}


def _profile(inputs: EdgeInputs, options: EdgeOptions, formats: dict[str, ExportedFormat]
             ) -> dict[str, FormatProfile]:
    specs = [FormatSpec(TORCH, inputs.torch_files, lambda: TorchStepper(inputs.load_torch()), None,
                        "PyTorch eager with the model's cache")]
    specs += [f.spec for f in formats.values()]
    tokens = list(inputs.profile_tokens)
    with blas_threads(options.threads):
        return {s.name: profile_format(s, tokens, list(options.prefill_lengths), options.decode_tokens,
                                       options.profile_repeats, options.threads) for s in specs}


@contextlib.contextmanager
def blas_threads(threads: int) -> Iterator[None]:
    """One thread count for torch, onnxruntime (set on its sessions) and numpy's BLAS while profiling."""
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
