"""Phase 4 (BitNet b1.58) measured: packed ternary layer speed, file sizes and weight memory.

Prints, in one run:

1. layer speed at batch 1 (one token) for the spec25m layer shapes: fp32 ``nn.Linear`` against
   ``PackedTernaryLinear`` (C kernel) and its no-compiler fallback (torch int8), best of several timed
   loops, same thread count for all;
2. file sizes of a spec25m-sized model: fp32 and fp16 safetensors against the packed TQ2_0 / TQ1_0 files
   (rest fp16, optionally int8 embedding), and the ratio for the ternary layers alone;
3. weight memory of the model in fp32 against the same model after ``to_packed_inference``;
4. one single-token forward pass of the whole stand-in model, fp32 against packed.

``--explore`` also times the alternatives weighed for the fast path (onnxruntime MatMulNBits with 2 bits,
MatMulInteger, torch ``_int_mm``). The model is a ``LlamaForCausalLM`` with the spec25m preset's shapes
(d 384 x 8 layers, MLP 1024, vocab 32768, tied embedding) until ``agent_forge.model`` is wired into
Phase 4; ``build_model`` is the one place to change. Quality figures (perplexity, accuracy) belong to the
Phase 4 recipe, which owns the trained model and the held-out set.

    python benchmarks/bitnet.py                  # spec25m shapes, 1 thread
    python benchmarks/bitnet.py --quick          # small shapes, seconds
    python benchmarks/bitnet.py --threads 2 --explore --json out.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.quant.bitlinear import BitLinear, freeze_ternary, replace_linears
from agent_forge.quant.fast_linear import PackedTernaryLinear, native_kernel, to_packed_inference
from agent_forge.quant.packed_io import PackedSaveConfig, packed_size_breakdown, save_packed

SPEC_LAYER_SHAPES = [(384, 384), (384, 1024), (1024, 384), (512, 2048), (2048, 512)]
QUICK_LAYER_SHAPES = [(128, 128), (128, 344)]


@dataclass(frozen=True)
class Shape:
    vocab: int = 32768
    hidden: int = 384
    layers: int = 8
    heads: int = 8
    mlp: int = 1024


QUICK = Shape(vocab=2048, hidden=128, layers=2, heads=4, mlp=344)


def spec25m_shape() -> Shape:
    """The spec25m preset's model section, read from the shipped preset so the two cannot drift."""
    from agent_forge.config import load_config

    model = load_config("spec25m").model
    return Shape(model.vocab_size, model.hidden_size, model.num_layers, model.num_heads, model.mlp_hidden)


def build_model(shape: Shape, seed: int = 0) -> nn.Module:
    """A tied-embedding Llama with the preset's shapes (stand-in for ForgeForCausalLM)."""
    config = LlamaConfig(
        vocab_size=shape.vocab,
        hidden_size=shape.hidden,
        intermediate_size=shape.mlp,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        max_position_embeddings=256,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()


def best_microseconds(fn: Callable[[], object], inner: int = 300, repeats: int = 15) -> float:
    """Best mean time of ``repeats`` loops of ``inner`` calls: the least disturbed by other processes."""
    for _ in range(inner // 3):
        fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best * 1e6


def _frozen_bitlinear(in_features: int, out_features: int) -> BitLinear:
    layer = BitLinear(in_features, out_features, bias=False)
    layer.freeze()
    return layer


def layer_speed(shapes: list[tuple[int, int]]) -> list[dict]:
    """Batch-1 time of fp32 nn.Linear, the packed C path and the torch int8 fallback, per shape."""
    rows = []
    for in_features, out_features in shapes:
        torch.manual_seed(0)
        linear = nn.Linear(in_features, out_features, bias=False)
        layer = _frozen_bitlinear(in_features, out_features)
        packed = PackedTernaryLinear.from_bitlinear(layer, backend="auto")
        fallback = PackedTernaryLinear.from_bitlinear(layer, backend="torch-int8")
        x = torch.randn(1, in_features)
        with torch.inference_mode():
            fp32_us = best_microseconds(lambda lin=linear, x=x: lin(x))
            packed_us = best_microseconds(lambda p=packed, x=x: p(x))
            fallback_us = best_microseconds(lambda f=fallback, x=x: f(x))
        rows.append(
            {
                "shape": f"{in_features}x{out_features}",
                "fp32_us": round(fp32_us, 2),
                "packed_us": round(packed_us, 2),
                "speedup": round(fp32_us / packed_us, 2),
                "torch_int8_us": round(fallback_us, 2),
                "torch_int8_speedup": round(fp32_us / fallback_us, 2),
            }
        )
    return rows


def _linear_weight_numel(model: nn.Module) -> int:
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, BitLinear))


def file_sizes(fp32_model: nn.Module, model: nn.Module, folder: Path) -> dict[str, float]:
    """Bytes on disk of the fp32 model in fp32/fp16 and of its BitLinear version packed (the tied head
    is stored once in every file)."""
    state = {k: v for k, v in fp32_model.state_dict().items() if k != "lm_head.weight"}
    sizes: dict[str, float] = {}
    for name, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
        path = folder / f"{name}.safetensors"
        save_file({k: v.to(dtype).contiguous() for k, v in state.items()}, str(path))
        sizes[name] = path.stat().st_size
    for fmt in ("tq2_0", "tq1_0"):
        for int8 in (False, True):
            label = f"{fmt}+{'int8_embed' if int8 else 'fp16'}"
            path = folder / f"{label}.safetensors"
            sizes[label] = save_packed(model, path, PackedSaveConfig(fmt, "float16", int8))
            sizes[f"{label}:ternary_bytes"] = packed_size_breakdown(path)["ternary"]
    n_ternary = _linear_weight_numel(model)
    for fmt in ("tq2_0", "tq1_0"):
        sizes[f"ternary_layers_ratio_vs_fp32:{fmt}"] = round(
            n_ternary * 4 / sizes[f"{fmt}+fp16:ternary_bytes"], 2
        )
        sizes[f"bits_per_ternary_weight:{fmt}"] = round(sizes[f"{fmt}+fp16:ternary_bytes"] * 8 / n_ternary, 4)
    return sizes


def weight_bytes(model: nn.Module) -> int:
    """Bytes of all parameters and buffers, each storage counted once (tied weights once)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*model.parameters(), *model.buffers()]:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in seen:
            seen.add(storage.data_ptr())
            total += storage.nbytes()
    return total


def decode_step(fp32_model: nn.Module, packed_model: nn.Module, vocab: int) -> dict[str, float]:
    """One-token forward of the whole model at batch 1 (no KV cache), fp32 against packed."""
    ids = torch.randint(0, vocab, (1, 1), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        fp32_us = best_microseconds(lambda: fp32_model(ids), inner=30, repeats=7)
        packed_us = best_microseconds(lambda: packed_model(ids), inner=30, repeats=7)
    return {
        "fp32_us": round(fp32_us, 1),
        "packed_us": round(packed_us, 1),
        "speedup": round(fp32_us / packed_us, 2),
    }


def _ort_session(nodes: list, initializers: list, k: int, n: int, threads: int) -> object:
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "layer",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        initializers,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    model = helper.make_model(graph, opset_imports=opsets)
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def explore_alternatives(shapes: list[tuple[int, int]], threads: int) -> list[dict]:
    """Time the other candidates for the fast path at batch 1 (weights random: timing only)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rows = []
    rng = np.random.default_rng(0)
    for k, n in shapes:
        x = rng.standard_normal((1, k)).astype(np.float32)
        packed2 = rng.integers(0, 256, (n, k // 32, 8), dtype=np.uint8)
        nbits = helper.make_node(
            "MatMulNBits", ["x", "w", "s"], ["y"], domain="com.microsoft", K=k, N=n, bits=2, block_size=32,
            accuracy_level=4,
        )  # fmt: skip
        scales = numpy_helper.from_array(np.full(n * k // 32, 0.01, np.float32), "s")
        nbits_session = _ort_session([nbits], [numpy_helper.from_array(packed2, "w"), scales], k, n, threads)
        integer_nodes = [
            helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"]),
            helper.make_node("MatMulInteger", ["xq", "w", "xz"], ["yi"]),
            helper.make_node("Cast", ["yi"], ["yf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["yf", "xs"], ["y"]),
        ]
        w_int8 = numpy_helper.from_array(rng.integers(-1, 2, (k, n)).astype(np.int8), "w")
        integer_session = _ort_session(integer_nodes, [w_int8], k, n, threads)
        xq, wq = (
            torch.randint(-127, 127, (1, k), dtype=torch.int8),
            torch.randint(-1, 2, (k, n), dtype=torch.int8),
        )
        rows.append(
            {
                "shape": f"{k}x{n}",
                "ort_matmulnbits_2bit_us": round(
                    best_microseconds(lambda s=nbits_session, x=x: s.run(None, {"x": x})), 2
                ),
                "ort_matmulinteger_us": round(
                    best_microseconds(lambda s=integer_session, x=x: s.run(None, {"x": x})), 2
                ),
                "torch_int_mm_only_us": round(best_microseconds(lambda a=xq, b=wq: torch._int_mm(a, b)), 2),
            }
        )
    return rows


def _print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    if not rows:
        return
    columns = list(rows[0])
    print("  ".join(f"{c:>18}" for c in columns))
    for row in rows:
        print("  ".join(f"{row[c]!s:>18}" for c in columns))


def model_figures(shape: Shape) -> dict:
    """Sizes on disk, weight memory and a decode step for the stand-in model of ``shape``."""
    fp32_model = build_model(shape)
    model = build_model(shape)
    replace_linears(model, keep={"lm_head"})
    freeze_ternary(model)
    with tempfile.TemporaryDirectory() as folder:
        sizes = file_sizes(fp32_model, model, Path(folder))
    fp32_bytes = weight_bytes(fp32_model)
    to_packed_inference(model)
    packed_bytes = weight_bytes(model)
    model.model.embed_tokens.half()  # the memory of a packed model that also keeps its embedding in fp16
    half_embed_bytes = weight_bytes(model)
    model.model.embed_tokens.float()
    memory = {
        "fp32_bytes": fp32_bytes,
        "packed_bytes": packed_bytes,
        "reduction": round(fp32_bytes / packed_bytes, 2),
        "reduction_if_embedding_fp16": round(fp32_bytes / half_embed_bytes, 2),
    }
    return {"sizes": sizes, "memory": memory, "decode_step": decode_step(fp32_model, model, shape.vocab)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes, for CI")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--explore", action="store_true", help="also time onnxruntime and torch int8 options")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shapes = QUICK_LAYER_SHAPES if args.quick else SPEC_LAYER_SHAPES
    shape = QUICK if args.quick else spec25m_shape()
    kernel = native_kernel()
    report: dict = {
        "threads": args.threads,
        "kernel": kernel.name if kernel else "torch-int8",
        "shape": vars(shape),
    }
    print(f"threads {args.threads}, packed backend {report['kernel']}, model {shape}")
    report["layers"] = layer_speed(shapes)
    _print_table("batch-1 layer time (us), fp32 nn.Linear vs packed ternary", report["layers"])
    if args.explore:
        report["alternatives"] = explore_alternatives(shapes, args.threads)
        _print_table("alternatives considered (us)", report["alternatives"])
    report.update(model_figures(shape))
    sizes = report["sizes"]
    print("\nfile sizes (bytes; ratio vs fp32)")
    for key, value in sizes.items():
        ratio = f"  {sizes['fp32'] / value:.2f}x" if ":" not in key else ""
        print(f"  {key:>40}: {value}{ratio}")
    print(f"\nweight memory: {report['memory']}")
    print(f"single-token forward, whole model: {report['decode_step']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
