"""Phase 1 on the smoke preset: a trunk and three specialists that learn and differ."""

from __future__ import annotations

import math

from agent_forge.model_io import load_model
from agent_forge.phases.cognate import CognatePhase
from support.phase_harness import make_context


def test_cognate_trains_trunk_and_three_specialists(tmp_path):
    ctx = make_context(tmp_path, "cognate")
    result = CognatePhase().run(ctx, [])
    assert result.success and len(result.models) == 3
    names = [ref.metadata["specialization"] for ref in result.models]
    assert names == ["reasoning", "memory_integration", "adaptive_computation"]
    for ref in result.models:
        meta = ref.metadata
        assert meta["final_loss"] < meta["initial_loss"]
        assert meta["loss_drop"] > 0.2
        assert (ref.path / "model.safetensors").exists() and (ref.path / "tokenizer.json").exists()
        assert sum(meta["param_breakdown"].values()) == ref.parameters
        shares = [v for k, v in meta["halting"].items() if k.startswith("halt_share_step_")]
        assert math.isclose(sum(shares), 1.0, rel_tol=1e-5)
        assert 1.0 <= meta["halting"]["mean_halt_steps"] <= len(shares)
    thresholds = {load_model(ref).config.act_threshold for ref in result.models}
    assert len(thresholds) == 3
    assert result.after.loss < result.before.loss
    trunk = ctx.registry.get_model(result.models[0].metadata["trunk_model_id"])
    assert trunk["phase_name"] == "cognate"
    assert all(math.isfinite(v) for v in result.metrics.values() if isinstance(v, float))


def test_cognate_rerun_resumes_from_checkpoints_to_the_same_models(tmp_path):
    ctx = make_context(tmp_path, "cognate")
    first = CognatePhase().run(ctx, [])
    again = CognatePhase().run(make_context(tmp_path, "cognate"), [])
    assert [r.model_id for r in again.models] == [r.model_id for r in first.models]
    assert [r.metadata["final_loss"] for r in again.models] == [r.metadata["final_loss"] for r in first.models]
