"""Phase 5 on the smoke preset: curriculum QAT of a ternary model that stays exactly packable."""

from __future__ import annotations

import math

import torch

from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta, load_model
from agent_forge.phases.common import forge_config, session_data
from agent_forge.phases.forge import ForgePhase, level_accuracy, level_data, train_curriculum
from agent_forge.quant.bitlinear import BitLinearConfig, bitlinear_modules, replace_linears, ternary_state
from agent_forge.quant.packed_io import load_packed
from agent_forge.train.curriculum import CurriculumConfig, CurriculumScheduler
from support.phase_harness import harness_config, make_context, register_model

OVERRIDES = ["forge.steps=8", "forge.eval_interval=4", "forge.dream_every=4", "forge.dream_steps=1"]


def _ternary_seed(tmp_path, config):
    """A smoke model converted to BitLinear and registered the way Phase 4 registers its output."""
    ctx = make_context(tmp_path, "bitnet", config)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    bit_config = BitLinearConfig()
    replace_linears(model, keep={"lm_head"}, config=bit_config)
    meta = {"bitlinear": bitlinear_meta(model, bit_config), "compression_ratio": 5.0, "accuracy_retention": 1.0}
    return register_model(ctx, model, "ternary", meta)


def _run(tmp_path, overrides=OVERRIDES):
    config = harness_config("smoke", overrides)
    seed = _ternary_seed(tmp_path, config)
    ctx = make_context(tmp_path, "forge", config)
    return seed, ctx, ForgePhase().run(ctx, [seed])


def test_forge_trains_on_the_curriculum_and_stays_ternary(tmp_path):
    seed, ctx, result = _run(tmp_path)
    assert result.success and len(result.models) == 1
    ref, metrics = result.models[0], result.metrics
    assert ref.metadata["bitlinear"]["modules"] == seed.metadata["bitlinear"]["modules"]
    steps = sum(v for k, v in metrics.items() if k.startswith(("curriculum/steps_level_", "curriculum/dream_steps")))
    assert steps == 8
    assert metrics["curriculum/evaluations"] >= 2 and 1 <= metrics["curriculum/highest_level"] <= 3
    levels = {"1", "2", "3"}
    assert set(ref.metadata["accuracy_by_level_before"]) == set(ref.metadata["accuracy_by_level_after"]) == levels
    assert metrics["packed/logits_max_abs_diff"] == 0.0 and metrics["grokfast"] == 1
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert result.after.loss < result.before.loss

    model = load_model(ref)
    assert sorted(bitlinear_modules(model)) == ref.metadata["bitlinear"]["modules"]
    packed = load_packed(ref.path / ref.metadata["packed_file"])
    for name, weight in ternary_state(model).items():
        assert torch.equal(packed.ternary[name].values, weight.values)
        assert torch.equal(packed.ternary[name].scale, weight.scale)
    ids = session_data(ctx).heldout.lm_batches(2)[0][0]
    assert not torch.equal(model(input_ids=ids).logits, load_model(seed)(input_ids=ids).logits)


def test_forge_rerun_resumes_to_the_same_model_with_grokfast_off(tmp_path):
    overrides = [*OVERRIDES, "forge.grokfast=false"]
    seed, _, first = _run(tmp_path, overrides)
    ref = first.models[0]
    packed_bytes = (ref.path / ref.metadata["packed_file"]).read_bytes()
    config = harness_config("smoke", overrides)
    again = ForgePhase().run(make_context(tmp_path, "forge", config), [seed])
    assert first.metrics["grokfast"] == again.metrics["grokfast"] == 0
    assert again.models[0].model_id == ref.model_id
    assert (ref.path / ref.metadata["packed_file"]).read_bytes() == packed_bytes
    for key in ("after/loss", "curriculum/highest_level", "train/final_loss"):
        assert again.metrics[key] == first.metrics[key]


def test_forge_refuses_a_model_that_is_not_ternary(tmp_path):
    config = harness_config("smoke", OVERRIDES)
    ctx = make_context(tmp_path, "bitnet", config)
    torch.manual_seed(0)
    plain = register_model(ctx, ForgeForCausalLM(forge_config(config)), "plain", {})
    ok, reason = ForgePhase().validate_input(make_context(tmp_path, "forge", config), [plain])
    assert not ok and "bitlinear" in reason


def test_inside_training_the_level_falls_and_a_dream_replays_the_level_below(tmp_path):
    """A fresh model scores 0: started at the top level it must step down at each evaluation, and the
    dream cycle at step 4 (level 2 by then) must replay level 1 and measure it before and after."""
    config = harness_config("smoke", OVERRIDES)
    seed = _ternary_seed(tmp_path, config)
    ctx = make_context(tmp_path, "forge", config)
    model, section = load_model(seed), ctx.phase_config
    levels = level_data(ctx, section)
    scheduler = CurriculumScheduler(CurriculumConfig(max_level=3, eval_interval=4, dream_every=4, dream_steps=1))
    state = scheduler.state_dict()
    scheduler.load_state_dict({**state, "level": 3, "highest": 3})
    measured: list[list[int]] = []

    def measure(wanted: list[int]) -> dict[int, float]:
        measured.append(wanted)
        return {level: level_accuracy(model, levels.evals[level]) for level in wanted}

    train_curriculum(ctx, model, section, levels, scheduler, measure, torch.device("cpu"))
    assert [(h["level"], h["new_level"]) for h in scheduler.history] == [(3, 2), (2, 1)]
    assert scheduler.steps_per_level == {3: 4, 2: 3} and scheduler.dream_steps_per_level == {1: 1}
    assert measured == [[1], [1]] and len(scheduler.dreams) == 1
    assert set(scheduler.dreams[0]["before"]) == set(scheduler.dreams[0]["after"]) == {1}
