"""TrainLoop: exact resume, NaN/spike recovery with half the learning rate, OOM fallback, config-diff warning."""

from __future__ import annotations

import json
import math

import pytest
import torch

from agent_forge.config.schema import TrainSection
from agent_forge.train.loop import RECOVERY_LR_FACTOR, StepOutput, TrainingDivergedError, TrainLoop, warmup_cosine
from support.phase_harness import make_context
from support.tiny_phases import TinyLM, batch_at, lm_step

TRAIN = TrainSection(batch_size=8, warmup_steps=2, eval_every=5, checkpoint_every=5, spike_factor=4.0,
                     max_recoveries=2)


def _loop(ctx, steps: int, step_fn=lm_step, config=None, train=TRAIN) -> TrainLoop:
    torch.manual_seed(0)
    model = TinyLM()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return TrainLoop(ctx=ctx, run_name="lm", model=model, optimizer=optimizer, batch_fn=batch_at,
                     step_fn=step_fn, total_steps=steps, train=train, config=config or {"lr": 1e-2},
                     eval_fn=lambda m: {"loss": float(lm_step(m, batch_at(999)).loss)})


def test_warmup_cosine_shape():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(55, 100, 10) < warmup_cosine(20, 100, 10)


def test_resumed_loss_curve_equals_uninterrupted(tmp_path):
    full = _loop(make_context(tmp_path / "a", "cognate"), 12).run()
    calls = {"n": 0}

    def interrupted(model, batch):
        calls["n"] += 1
        if calls["n"] == 8:
            raise KeyboardInterrupt
        return lm_step(model, batch)

    with pytest.raises(KeyboardInterrupt):
        _loop(make_context(tmp_path / "b", "cognate"), 12, step_fn=interrupted).run()
    resumed = _loop(make_context(tmp_path / "b", "cognate"), 12).run()
    assert len(resumed.losses) == 12
    for a, b in zip(full.losses, resumed.losses, strict=True):
        assert a == pytest.approx(b, abs=1e-4)
    assert full.losses[-1] < full.losses[0]
    assert resumed.state.extra.get("eval_history")


def test_nan_reloads_checkpoint_with_half_lr(tmp_path):
    calls = {"n": 0}

    def flaky(model, batch):
        calls["n"] += 1
        out = lm_step(model, batch)
        if calls["n"] == 8:
            return StepOutput(out.loss * float("nan"))
        return out

    loop = _loop(make_context(tmp_path, "cognate"), 10, step_fn=flaky)
    result = loop.run()
    assert result.recoveries == 1
    assert result.state.extra[RECOVERY_LR_FACTOR] == pytest.approx(0.5)
    assert all(math.isfinite(v) for v in result.losses) and len(result.losses) == 10
    names = {row["name"] for row in loop.ctx.registry.metrics(loop.ctx.session_id)}
    assert "recovery/lr_scale" in names


def test_divergence_beyond_budget_is_a_clear_error(tmp_path):
    loop = _loop(make_context(tmp_path, "cognate"), 10,
                 step_fn=lambda m, b: StepOutput(lm_step(m, b).loss * float("nan")))
    with pytest.raises(TrainingDivergedError, match="diverged"):
        loop.run()


def test_out_of_memory_halves_the_micro_batch(tmp_path):
    def picky(model, batch):
        if len(batch) > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        return lm_step(model, batch)

    result = _loop(make_context(tmp_path, "cognate"), 3, step_fn=picky).run()
    assert result.state.extra["accum"] == 4 and len(result.losses) == 3


def test_out_of_memory_at_micro_batch_one_on_cpu_fails_clearly(tmp_path):
    def hopeless(model, batch):
        raise RuntimeError("out of memory")

    with pytest.raises(TrainingDivergedError, match="micro-batch 1"):
        _loop(make_context(tmp_path, "cognate"), 3, step_fn=hopeless).run()


def test_resume_with_changed_config_records_the_difference(tmp_path):
    _loop(make_context(tmp_path, "cognate"), 5, config={"lr": 1e-2}).run()
    result = _loop(make_context(tmp_path, "cognate"), 8, config={"lr": 5e-3}).run()
    assert result.state.extra["config_diff"] == ["lr"]


def test_a_checkpoint_naming_the_recovery_factor_lr_scale_resumes_with_it(tmp_path):
    """Checkpoints written before the rename keep the factor under "lr_scale": resume reads it under its new name."""
    _loop(make_context(tmp_path, "cognate"), 5).run()
    state_files = sorted(tmp_path.rglob("step_*/state.json"))
    assert state_files
    for path in state_files:
        payload = json.loads(path.read_text())
        payload["trainer"]["extra"].pop(RECOVERY_LR_FACTOR)
        payload["trainer"]["extra"]["lr_scale"] = 0.5  # as a checkpoint of an old session after one recovery
        path.write_text(json.dumps(payload))
    result = _loop(make_context(tmp_path, "cognate"), 8).run()
    assert result.state.extra[RECOVERY_LR_FACTOR] == pytest.approx(0.5) and "lr_scale" not in result.state.extra
    assert len(result.losses) == 8
