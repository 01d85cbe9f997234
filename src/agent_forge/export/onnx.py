"""ONNX export of ``ForgeForCausalLM`` and an onnxruntime runner for the exported graph.

What is exported: a full-sequence forward at a FIXED length (the model's ``max_seq_len``), batch 1,
input ``input_ids`` (1, L) int64, output ``logits`` (1, L, V). There is no KV cache in the graph: a decode
step re-runs the whole window. Shorter inputs are right-padded: the model is causal (attention, the chunked
memory and the position-wise recursion), so padding after position n never changes logits at positions
<= n. The length is fixed because the Titans memory scans its chunks in a Python loop whose trip count
follows the length; ``torch.export`` cannot make that dynamic, and a traced graph bakes it in.

How: the TorchScript exporter (``dynamo=False``), which traces the model in seconds (the dynamo exporter
needs about a minute for the same graph). Under tracing the model itself switches to ``run_masked``: every
recursion step runs and the ACT halting step is selected with masks. Before tracing, a copy of the model
gets export-friendly modules: RMSNorm written out (the exporter has no ``aten::rms_norm`` at opset 17) and
each BitLinear replaced by a float linear on its dequantized weights (ternary * scale) that keeps the
8-bit per-token activation quantization (abs, max, round, clip export as plain ONNX ops).

The int8 variant, ``quantize_int8_weights``, stores weights as int8 with one scale per output channel,
turned back into fp32 when the session loads, so everything computes in fp32; the ternary layers' weights
(+-scale or 0 in every column) are exact in int8. onnxruntime's dynamic quantization (activations
quantized per call, per tensor over the whole padded window) reproduced 0.05 of the fp32 graph's greedy
tokens on the default run's model (0.37 over 16 prompts), per-channel or with sensitive layers in fp32 at
most 0.57; so it is not used. The bundle ships the int8 graph only when its greedy decoding follows the
fp32 graph's (``export.build``).
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.quant.bitlinear import BitLinear, dequantized_activations

INPUT_NAME, OUTPUT_NAME = "input_ids", "logits"
DEFAULT_OPSET = 17


class ExportRMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight, in ops every ONNX opset has."""

    def __init__(self, norm: nn.RMSNorm) -> None:
        super().__init__()
        self.weight = nn.Parameter(norm.weight.detach().clone(), requires_grad=False)
        self.eps = float(norm.eps if norm.eps is not None else torch.finfo(norm.weight.dtype).eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class ExportBitLinear(nn.Module):
    """A BitLinear's inference forward as plain ops: dequantized weights, quantized activations."""

    def __init__(self, layer: BitLinear) -> None:
        super().__init__()
        ramp = float(layer.ramp)
        full = layer.weight.detach().float()
        weight = full + ramp * (layer.ternary_weight().dequantize().to(full.device) - full)
        self.weight = nn.Parameter(weight, requires_grad=False)
        bias = layer.bias
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone(), requires_grad=False)
        self.ramp, self.bits, self.eps = ramp, layer.config.activation_bits, layer.config.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ramp > 0.0:
            x = x + self.ramp * (dequantized_activations(x, self.bits, self.eps) - x)
        return F.linear(x, self.weight, self.bias)


class LogitsOnly(nn.Module):
    """model(input_ids) -> logits, without a cache (the traced signature)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def export_ready_copy(model: nn.Module) -> nn.Module:
    """A CPU fp32 eval copy with RMSNorm and BitLinear swapped for their export forms."""
    twin = copy.deepcopy(model).float().cpu().eval()
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, BitLinear):
                setattr(parent, name, ExportBitLinear(child))
            elif isinstance(child, nn.RMSNorm):
                setattr(parent, name, ExportRMSNorm(child))
    return twin


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    seq_len: int
    opset: int
    seconds: float
    exporter: str = "torchscript"

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size


def export_onnx(model: nn.Module, path: str | Path, seq_len: int | None = None,
                opset: int = DEFAULT_OPSET) -> OnnxExport:
    """Trace ``model`` at batch 1 and a fixed length (default ``config.max_seq_len``) into one .onnx file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    length = int(seq_len or model.config.max_seq_len)
    wrapper = LogitsOnly(export_ready_copy(model)).eval()
    example = torch.full((1, length), int(model.config.bos_token_id or 1), dtype=torch.long)
    start = time.perf_counter()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], do_constant_folding=True)
    return OnnxExport(path, length, opset, time.perf_counter() - start)


def _int8_per_channel(weight: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes and one fp32 scale per index of ``axis`` (max |w| maps to 127; zero rows: 1).

    The scale keeps the weight's rank (size 1 off ``axis``), so ``codes * scale`` broadcasts back."""
    reduce = tuple(i for i in range(weight.ndim) if i != axis)
    peak = np.abs(weight).max(axis=reduce, keepdims=True)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    return codes, scale


def _weight_axis(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> tuple[str, int] | None:
    """(initializer, channel axis) of a MatMul's constant 2-D weight or a Gather's embedding table."""
    if node.op_type == "MatMul" and node.input[1] in initializers:
        name, axis = node.input[1], 1  # (in, out): a scale per output column
    elif node.op_type == "Gather" and node.input[0] in initializers:
        name, axis = node.input[0], 0  # (vocab, d): a scale per embedding row
    else:
        return None
    tensor = initializers[name]
    if len(tensor.dims) != 2 or tensor.data_type != onnx.TensorProto.FLOAT:
        return None
    return name, axis


def quantize_int8_weights(source: str | Path, target: str | Path, keep_float: Sequence[str] = ()) -> Path:
    """Weight-only int8: every constant MatMul weight and embedding table stored as int8 codes with one
    fp32 scale per output channel, turned back into fp32 in the graph by ``Cast`` and ``Mul``.

    Not ``DequantizeLinear``: onnxruntime fuses DequantizeLinear + MatMul into MatMulNBits, which by
    default quantizes the activations to int8 as well (measured: mean |logit diff| 0.08 instead of 1e-6).
    Cast + Mul of constants is folded once at session load, so the graph computes in fp32 everywhere.
    Nodes whose name contains one of ``keep_float`` (e.g. ``lm_head``) keep their fp32 weights."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    restored: dict[str, str] = {}
    front: list[onnx.NodeProto] = []
    for node in graph.node:
        found = _weight_axis(node, initializers)
        if found is None or any(part in node.name for part in keep_float):
            continue
        name, axis = found
        if name not in restored:
            codes, scale = _int8_per_channel(numpy_helper.to_array(initializers[name]), axis)
            graph.initializer.extend([numpy_helper.from_array(codes, f"{name}_int8"),
                                      numpy_helper.from_array(scale, f"{name}_scale")])
            restored[name] = f"{name}_restored"
            front += [helper.make_node("Cast", [f"{name}_int8"], [f"{name}_float"], name=f"{name}_Cast",
                                       to=onnx.TensorProto.FLOAT),
                      helper.make_node("Mul", [f"{name}_float", f"{name}_scale"], [restored[name]],
                                       name=f"{name}_Scale")]
        for i, value in enumerate(node.input):
            if value == name:
                node.input[i] = restored[name]
    _drop_unused(graph, set(restored))
    nodes = front + list(graph.node)  # the new nodes read initializers only: first is a topological place
    del graph.node[:]
    graph.node.extend(nodes)
    target = Path(target)
    onnx.save(model, str(target))
    return target


def _drop_unused(graph: onnx.GraphProto, names: set[str]) -> None:
    """Remove the fp32 originals that no node reads any more (a tied table used elsewhere stays)."""
    used = {value for node in graph.node for value in node.input}
    keep = [t for t in graph.initializer if t.name not in names or t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


class OnnxRunner:
    """An exported graph under onnxruntime: logits of a prefix up to the fixed length, greedy decoding."""

    def __init__(self, path: str | Path, seq_len: int, threads: int = 1, pad_id: int = 0) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(int(threads), 1)
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: spinning pool threads take the cores from PyTorch and the numpy
        # runtime that the profile and agreement checks call in turn (measured: 4x slower phase 7 on 2 cores)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.seq_len, self.pad_id = int(seq_len), int(pad_id)

    def logits(self, ids: list[int] | np.ndarray) -> np.ndarray:
        """(n, V) logits of the last ``seq_len`` tokens of ``ids`` (right-padded to the fixed length)."""
        window = np.asarray(ids, dtype=np.int64).reshape(-1)[-self.seq_len :]
        padded = np.full((1, self.seq_len), self.pad_id, dtype=np.int64)
        padded[0, : window.size] = window
        return self.session.run([OUTPUT_NAME], {INPUT_NAME: padded})[0][0, : window.size]

    def greedy(self, prompt: list[int], max_new_tokens: int) -> list[int]:
        """Greedy tokens; each step re-runs the window (beyond ``seq_len`` tokens the oldest drop out)."""
        ids, out = list(prompt), []
        for _ in range(max_new_tokens):
            token = int(np.argmax(self.logits(ids)[-1]))
            out.append(token)
            ids.append(token)
        return out
