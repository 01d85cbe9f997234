"""Phase 4 on the smoke preset: ternary layers, QAT (ramp and direct), a packed file that reloads exactly."""

from __future__ import annotations

import math

import torch

from agent_forge.model_io import load_model
from agent_forge.phases.bitnet import BitNetPhase
from agent_forge.phases.common import session_data
from agent_forge.quant.bitlinear import bitlinear_modules, replace_linears, ternary_state
from agent_forge.quant.packed_io import load_packed_into
from support.phase_harness import harness_config, make_context, seed_model

# QAT scores answers and a quarter of the prompts, as the tiny preset's does (batches with labels)
OVERRIDES = ["bitnet.finetune_trigger_drop=0.0", "bitnet.compare_ramp=true", "bitnet.finetune_steps=4",
             "bitnet.calibration_samples=16", "bitnet.prompt_loss_share=0.25"]


def _run(tmp_path):
    config = harness_config("smoke", OVERRIDES)
    meta = {"coherence_score": 0.8, "validity_rate": 1.0}
    ref = seed_model(tmp_path, "quietstar", config=config, metadata=meta)
    ctx = make_context(tmp_path, "bitnet", config)
    return ref, ctx, BitNetPhase().run(ctx, [ref])


def test_bitnet_quantizes_finetunes_and_packs_exactly(tmp_path):
    seed_ref, ctx, result = _run(tmp_path)
    assert result.success and len(result.models) == 1
    ref = result.models[0]
    meta, metrics = ref.metadata, result.metrics
    assert meta["compression_ratio"] > 3.0
    assert meta["compression_ratio"] == metrics["compression/compression_ratio"]
    assert meta["accuracy_retention"] > 0.0 and meta["accuracy_retention_basis"] in ("accuracy", "perplexity")
    assert metrics["packed/logits_max_abs_diff"] == 0.0
    assert metrics["qat/triggered"] == 1
    assert metrics["qat/ramp_steps"] == metrics["qat/direct_steps"] == 4
    assert metrics["compression/layers_compressed"] == len(meta["bitlinear"]["modules"]) > 0
    assert 0.0 < metrics["compression/sparsity_ratio"] < 1.0
    assert all(math.isfinite(v) for v in metrics.values() if isinstance(v, float))
    assert result.before.perplexity > 0 and result.after.perplexity > 0
    assert result.after.size_mb < result.before.size_mb

    model = load_model(ref)
    assert sorted(bitlinear_modules(model)) == meta["bitlinear"]["modules"]
    assert "lm_head" not in meta["bitlinear"]["modules"]
    for weight in ternary_state(model).values():
        assert set(weight.values.unique().tolist()) <= {-1, 0, 1}
    seed = load_model(seed_ref)
    name = meta["bitlinear"]["modules"][0]
    assert not torch.equal(model.get_submodule(name).weight, seed.get_submodule(name).weight)  # QAT moved it

    rebuilt = load_model(seed_ref)
    replace_linears(rebuilt, keep=lambda n: n not in set(meta["bitlinear"]["modules"]))
    load_packed_into(rebuilt, ref.path / meta["packed_file"])
    ids = session_data(ctx).heldout.lm_batches(4)[0][0]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, rebuilt.eval()(input_ids=ids).logits)


def test_bitnet_rerun_resumes_to_the_same_packed_file(tmp_path):
    _, _, first = _run(tmp_path)
    packed = first.models[0].path / first.models[0].metadata["packed_file"]
    first_bytes = packed.read_bytes()
    config = harness_config("smoke", OVERRIDES)
    again = BitNetPhase().run(make_context(tmp_path, "bitnet", config), [_seed_ref(tmp_path, config)])
    assert again.models[0].model_id == first.models[0].model_id
    assert packed.read_bytes() == first_bytes
    key = "quality/post_finetuning_perplexity"
    assert again.metrics[key] == first.metrics[key]


def _seed_ref(tmp_path, config):
    ctx = make_context(tmp_path, "quietstar", config)
    return ctx.load_ref(ctx.model_id("seed"))


def test_distilled_step_adds_the_teachers_kl_at_scored_positions_only(tmp_path):
    """KL(teacher || student) is 0 against an identical teacher (the loss is lm_step's), positive against
    another model, and reads only positions whose next label is scored."""
    from agent_forge.data.dataset import IGNORE_LABEL
    from agent_forge.phases.bitnet import distilled_lm_step
    from agent_forge.phases.common import frozen_copy, lm_step

    ref = seed_model(tmp_path, "quietstar", config=harness_config("smoke"))
    student = load_model(ref).eval()
    ids = torch.randint(3, 200, (2, 16), generator=torch.Generator().manual_seed(0))
    labels = ids.clone()
    labels[:, :8] = IGNORE_LABEL
    batch = {"input_ids": ids, "labels": labels}
    same = distilled_lm_step(student, frozen_copy(student), batch, weight=2.0)
    assert same.metrics["distill_kl"] == 0.0
    assert math.isclose(float(same.loss.detach()), float(lm_step(student, batch).loss.detach()), rel_tol=1e-6)
    other = frozen_copy(student)
    with torch.no_grad():
        other.lm_head.weight.mul_(3.0)
    differs = distilled_lm_step(student, other, batch, weight=2.0)
    assert differs.metrics["distill_kl"] > 0.0
    expected = float(same.loss.detach()) + 2.0 * differs.metrics["distill_kl"]
    assert math.isclose(float(differs.loss.detach()), expected, rel_tol=1e-5)
    unscored = {"input_ids": ids, "labels": torch.full_like(ids, IGNORE_LABEL)}
    assert distilled_lm_step(student, other, unscored, weight=1.0).metrics["distill_kl"] == 0.0
