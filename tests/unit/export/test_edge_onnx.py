"""ONNX export: onnxruntime logits agree with PyTorch (the int8 graph: test_edge_int8.py)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from agent_forge.export.onnx import ExportBitLinear, OnnxRunner, export_onnx
from agent_forge.quant.bitlinear import BitLinear


@pytest.fixture(scope="module")
def exported(bit_model, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("onnx")
    probe = torch.arange(3, 19).tolist()
    before = _torch(bit_model, probe)
    info = export_onnx(bit_model, folder / "model.onnx")
    return {"info": info, "fp32": OnnxRunner(info.path, info.seq_len),
            "unchanged": np.array_equal(_torch(bit_model, probe), before)}


def _torch(model, tokens: list[int]) -> np.ndarray:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0].numpy()


def test_graph_is_fixed_length_batch_one(exported, bit_model) -> None:
    info = exported["info"]
    graph = onnx.load(str(info.path)).graph
    dims = [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert info.seq_len == bit_model.config.max_seq_len and dims == [1, info.seq_len]
    assert {n.op_type for n in graph.node} >= {"Round", "ReduceMax"}, "activation quantization was exported"


@pytest.mark.parametrize("length", [64, 23])
def test_fp32_graph_matches_pytorch(exported, bit_model, ids, length: int) -> None:
    """Full length, and a shorter input right-padded inside the runner (causal: same logits)."""
    tokens = ids(length, seed=length)
    got = exported["fp32"].logits(tokens)
    assert got.shape == (length, bit_model.config.vocab_size)
    np.testing.assert_allclose(got, _torch(bit_model, tokens), atol=1e-4, rtol=0)


def test_greedy_over_the_window(exported, bit_model, ids) -> None:
    """Greedy decoding by re-running the window equals PyTorch's cached greedy while it fits."""
    from agent_forge.export.agreement import torch_greedy

    prompt = ids(20, seed=8)
    assert exported["fp32"].greedy(prompt, 12) == torch_greedy(bit_model)(prompt, 12)


def test_export_bitlinear_equals_bitlinear() -> None:
    torch.manual_seed(3)
    layer = BitLinear(40, 24, bias=True).eval()
    x = torch.randn(2, 5, 40)
    with torch.no_grad():
        torch.testing.assert_close(ExportBitLinear(layer)(x), layer(x), atol=1e-5, rtol=0)
        layer.ramp = 0.5
        torch.testing.assert_close(ExportBitLinear(layer)(x), layer(x), atol=1e-5, rtol=0)


def test_export_leaves_the_model_unchanged(exported, bit_model) -> None:
    """The export works on a copy: the model keeps its BitLinear layers and its outputs."""
    assert exported["unchanged"]
    assert any(isinstance(m, BitLinear) for m in bit_model.modules())
