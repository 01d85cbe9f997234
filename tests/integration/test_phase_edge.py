"""Phase 7 on the smoke preset: ONNX + ternary bundle, agreement with PyTorch, profile, verified manifest."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agent_forge.export.bundle import verify_bundle
from agent_forge.export.runtime import ManifestError, load_bundle
from agent_forge.export.runtime.manifest import sha256_file
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta, load_model
from agent_forge.phases.common import forge_config, session_data
from agent_forge.phases.edge import REPORT_FILE, EdgePhase
from agent_forge.pipeline.handoff import validate_handoff
from agent_forge.quant.bitlinear import BitLinearConfig, bitlinear_modules, replace_linears
from support.phase_harness import harness_config, make_context, register_model

FORMATS = ("onnx_fp32", "onnx_int8", "ternary_runtime")


def _bitlinear_seed(tmp_path, config):
    """A BitLinear model registered as the Baking phase would have registered it."""
    ctx = make_context(tmp_path, "baking", config)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    bit_config = BitLinearConfig()
    replace_linears(model, keep={"lm_head"}, config=bit_config)
    return register_model(ctx, model, "seed", {"bitlinear": bitlinear_meta(model, bit_config)})


def test_edge_exports_checks_profiles_and_seals_a_bundle(tmp_path):
    config = harness_config("smoke")
    seed = _bitlinear_seed(tmp_path, config)
    ctx = make_context(tmp_path, "edge", config)
    result = EdgePhase().run(ctx, [seed])
    assert result.success and len(result.models) == 1
    ref, meta, metrics = result.models[0], result.models[0].metadata, result.metrics

    assert meta["max_abs_diff_onnx_fp32"] < 1e-3
    assert meta["max_abs_diff_ternary_runtime"] < 0.05  # fp16 storage of the non-ternary tensors
    assert meta["max_abs_diff_onnx_int8"] < 0.5
    for name in FORMATS:
        assert 0.0 <= metrics[f"{name}/greedy_match"] <= 1.0 and metrics[f"{name}/decode_ms_per_token"] > 0
    assert metrics["ternary_runtime/greedy_match"] == 1.0
    assert metrics["pytorch_fp32/prefill_64_ms"] > 0 and metrics["onnx_fp32/prefill_64_ms"] > 0
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert meta["size_mb"] == metrics["ternary_runtime/file_mb"] < result.before.size_mb
    assert meta["latency_ms"] == metrics["ternary_runtime/decode_ms_per_token"] == result.after.latency_ms
    assert metrics["after/source"] == "ternary_runtime"
    assert abs(result.after.loss - result.before.loss) < 0.05 and result.after.loss != result.before.loss

    folder = ctx.workspace.bundle_dir(ctx.session_id)
    manifest = verify_bundle(folder)
    assert sha256_file(folder / "manifest.json") == meta["bundle_manifest_sha256"]
    assert set(manifest["profile"]) == {"pytorch_fp32", *FORMATS}
    assert {"model.onnx", "model.int8.onnx", "model.tq2_0.safetensors"} <= set(manifest["files"])
    report = json.loads((ref.path / REPORT_FILE).read_text())
    assert report["agreement"]["onnx_fp32"]["max_abs_diff"] == meta["max_abs_diff_onnx_fp32"]

    edge_model, seed_model = load_model(ref), load_model(seed)
    assert sorted(bitlinear_modules(edge_model)) == meta["bitlinear"]["modules"]
    ids = session_data(ctx).heldout.lm_batches(2)[0][0]
    with torch.no_grad():
        assert torch.equal(edge_model(input_ids=ids).logits, seed_model(input_ids=ids).logits)
    rule = config.handoff["edge->final"]
    outcome = validate_handoff("edge", "final", rule, result)
    assert outcome.passed, outcome.summary()

    weights = folder / "model.tq2_0.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestError):
        load_bundle(folder)
