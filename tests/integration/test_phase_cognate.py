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


def test_packed_rows_keep_prompted_and_plain_examples_apart(tmp_path):
    """Every phase's mix packs tool demonstrations (and persona rows) only with rows under the same
    prompts: no packed row shows a plain example beside a tool prompt."""
    from agent_forge.data.sources import training_examples
    from agent_forge.phases.common import packed_dataset, session_data

    from support.phase_harness import harness_config

    # rows of 256 tokens hold whole demonstrations (a smoke row of 64 cuts every one)
    ctx = make_context(tmp_path, "cognate", harness_config(overrides=["data.seq_len=256", "model.max_seq_len=256"]))
    tokenizer = session_data(ctx).tokenizer
    dataset = packed_dataset(ctx, tokenizer, training_examples(ctx.config, 600, 5), batch_size=8, seed=5)
    tool = tokenizer.special_id("<tool>")
    calls = [{tool in example for example in _whole_examples(row)} for row in dataset.rows.tolist()]
    assert {True} in calls and {False} in calls  # rows of demonstrations and rows of plain examples
    assert all(len(kinds) <= 1 for kinds in calls)


def _whole_examples(row: list[int]) -> list[list[int]]:
    """The examples of a packed row that lie whole in it: from a <bos> to its <eos>."""
    from agent_forge.data.tokenizer import BOS_ID, EOS_ID

    starts = [i for i, token in enumerate(row) if token == BOS_ID]
    return [row[a : row.index(EOS_ID, a) + 1] for a in starts if EOS_ID in row[a:]]
