"""The int8 ONNX graph: per-channel int8 weights, exact on ternary layers, shipped only past the greedy bar."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from agent_forge.data.tokenizer import train_tokenizer
from agent_forge.export.build import INT8_KEEP_FLOAT, EdgeInputs, EdgeOptions, build_edge_bundle
from agent_forge.export.bundle import verify_bundle
from agent_forge.export.onnx import OnnxRunner, _int8_per_channel, export_onnx, quantize_int8_weights


def test_per_channel_codes_round_trip_within_half_a_step() -> None:
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((16, 8)).astype(np.float32) * np.linspace(0.01, 3.0, 8, dtype=np.float32)
    weight[:, 3] = 0.0
    codes, scale = _int8_per_channel(weight, axis=1)
    assert codes.dtype == np.int8 and scale.shape == (1, 8) and scale[0, 3] == 1.0
    assert np.all(np.abs(codes.astype(np.float32) * scale - weight) <= scale / 2 + 1e-7)
    assert np.abs(codes).max(axis=0)[[0, 1, 2, 4]].tolist() == [127] * 4  # every column's peak is +-127
    ternary = rng.integers(-1, 2, (32, 12)).astype(np.float32) * 0.0731
    codes, scale = _int8_per_channel(ternary, axis=0)
    np.testing.assert_allclose(codes * scale, ternary, rtol=1e-6, atol=0)


@pytest.fixture(scope="module")
def graphs(bit_model, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("int8")
    info = export_onnx(bit_model, folder / "model.onnx")
    kept = quantize_int8_weights(info.path, folder / "kept.onnx", INT8_KEEP_FLOAT)
    every = quantize_int8_weights(info.path, folder / "every.onnx")
    return {"info": info, "kept": kept, "every": every}


def test_int8_graph_with_float_head_equals_the_fp32_graph(graphs, ids) -> None:
    """BitLinear weights are +-scale or 0 per tensor: int8 holds them exactly; Cast+Mul computes in fp32."""
    info, tokens = graphs["info"], ids(40, seed=3)
    fp32 = OnnxRunner(info.path, info.seq_len).logits(tokens)
    kept = OnnxRunner(graphs["kept"], info.seq_len).logits(tokens)
    np.testing.assert_allclose(kept, fp32, atol=1e-4, rtol=0)
    every = OnnxRunner(graphs["every"], info.seq_len).logits(tokens)
    assert 0.0 < np.abs(every - fp32).max() < 1.0  # the embedding in int8 moves the logits a little
    assert graphs["every"].stat().st_size < graphs["kept"].stat().st_size < info.bytes
    graph = onnx.load(str(graphs["kept"])).graph
    int8 = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8 and not any(k in name for name in int8 for k in INT8_KEEP_FLOAT)
    assert "DequantizeLinear" not in {n.op_type for n in graph.node}  # would be fused into int8 activations


def _build(bit_model, folder: Path, bar: float):
    tokenizer = train_tokenizer([f"what is {a} plus {b}? {a + b}" for a in range(20) for b in range(9)], 512)
    rows = [tokenizer.encode(f"what is {a} plus 3? {a + 3} what is 2 plus {a}?", bos=True) for a in range(3)]
    inputs = EdgeInputs(bit_model, tokenizer.to_json(), rows, [r[:8] for r in rows], [t for r in rows for t in r] * 8,
                        [], lambda: bit_model, {"source_model": "unit-test"})
    options = EdgeOptions(formats=("onnx",), prefill_lengths=(16,), decode_tokens=2, agreement_tokens=8,
                          profile_repeats=1, min_int8_greedy_match=bar)
    return build_edge_bundle(inputs, options, folder)


def test_int8_ships_past_the_bar_and_is_left_out_with_the_reason_below_it(bit_model, tmp_path: Path) -> None:
    shipped = _build(bit_model, tmp_path / "shipped", 0.9)
    decision = shipped.manifest["onnx_int8"]
    assert decision["shipped"] and decision["greedy_match_vs_fp32"] == 1.0 and decision["greedy_tokens"] == 24
    assert (tmp_path / "shipped" / "model.int8.onnx").is_file() and "onnx_int8" in shipped.profile
    assert "`model.int8.onnx` (weight-only int8" in (tmp_path / "shipped" / "README.md").read_text()

    refused = _build(bit_model, tmp_path / "refused", 1.01)  # a bar no graph can pass
    manifest = verify_bundle(tmp_path / "refused")
    decision = manifest["onnx_int8"]
    assert not decision["shipped"] and decision["greedy_match_vs_fp32"] == 1.0 and decision["threshold"] == 1.01
    assert "under the 1.01 required" in decision["reason"] and "model.int8.onnx" not in manifest["files"]
    assert not (tmp_path / "refused" / "model.int8.onnx").exists() and "onnx_int8" not in refused.profile
    settings = json.loads((tmp_path / "refused" / "runtime.json").read_text())
    assert settings["onnx"]["int8"] is None
    assert "No `model.int8.onnx`: greedy decoding" in (tmp_path / "refused" / "README.md").read_text()
