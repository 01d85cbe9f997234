"""MuonGrokfast against torch's own Muon and AdamW, plus state, schedulers, decay and determinism."""

from __future__ import annotations

import copy
import dataclasses
import io

import pytest
import torch
from torch import nn

from agent_forge.optim import MuGrokConfig, MuonGrokfast

# Two pairs of same-shaped matrices: the optimizer orthogonalises those as one batched stack.
MATRIX_SHAPES = {"hidden.a": (16, 32), "hidden.b": (48, 16), "hidden.c": (24, 24), "hidden.d": (16, 32),
                 "hidden.e": (48, 16)}
OTHER_SHAPES = {"embed.weight": (30, 8), "norm.weight": (8,), "hidden.bias": (16,)}
NO_FILTER = MuGrokConfig(grokfast=False, muon_lr=0.02, fallback_lr=0.01, weight_decay=0.1, qk_clip_tau=None)


def _params(shapes: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return {name: nn.Parameter(torch.randn(*shape, generator=generator)) for name, shape in shapes.items()}


def _clone(params: dict[str, nn.Parameter]) -> dict[str, nn.Parameter]:
    return {name: nn.Parameter(p.detach().clone()) for name, p in params.items()}


def _grad_sequence(
    shapes: dict[str, tuple[int, ...]], steps: int, seed: int = 1
) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        {name: torch.randn(*shape, generator=generator) for name, shape in shapes.items()}
        for _ in range(steps)
    ]


def _apply(
    optimizer: torch.optim.Optimizer, params: dict[str, nn.Parameter], grads: dict[str, torch.Tensor]
) -> None:
    for name, param in params.items():
        param.grad = grads[name].clone()
    optimizer.step()


def _assert_same(left: dict[str, nn.Parameter], right: dict[str, nn.Parameter]) -> None:
    for name in left:
        torch.testing.assert_close(left[name], right[name], rtol=1e-6, atol=1e-6, msg=name)


@pytest.mark.parametrize("nesterov", [True, False])
def test_muon_path_matches_torch_muon(nesterov: bool) -> None:
    ours = _params(MATRIX_SHAPES)
    theirs = _clone(ours)
    config = dataclasses.replace(NO_FILTER, nesterov=nesterov)
    optimizer = MuonGrokfast(ours.items(), config)
    reference = torch.optim.Muon(
        theirs.values(), lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=nesterov,
        adjust_lr_fn="match_rms_adamw",
    )  # fmt: skip
    assert set(optimizer.routing.values()) == {"muon"}
    start = {name: p.detach().clone() for name, p in ours.items()}
    for grads in _grad_sequence(MATRIX_SHAPES, steps=4):
        _apply(optimizer, ours, grads)
        _apply(reference, theirs, grads)
        _assert_same(ours, theirs)
    assert all(not torch.equal(start[name], ours[name]) for name in ours)


def test_grokfast_feeds_muon_the_filtered_gradient() -> None:
    """With the filter on, the update equals torch Muon run on g + lambda*EMA computed here by hand."""
    alpha, lam = 0.9, 0.5
    ours = _params(MATRIX_SHAPES)
    theirs = _clone(ours)
    config = dataclasses.replace(NO_FILTER, grokfast=True, grokfast_alpha=alpha, grokfast_lambda=lam)
    optimizer = MuonGrokfast(ours.items(), config)
    reference = torch.optim.Muon(theirs.values(), lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    ema: dict[str, torch.Tensor] = {}
    for grads in _grad_sequence(MATRIX_SHAPES, steps=5):
        for name, grad in grads.items():
            ema[name] = grad.clone() if name not in ema else alpha * ema[name] + (1 - alpha) * grad
        _apply(optimizer, ours, grads)
        _apply(reference, theirs, {name: grads[name] + lam * ema[name] for name in grads})
        _assert_same(ours, theirs)
        for name, param in ours.items():
            assert torch.equal(param.grad, grads[name]), "the raw gradient must be left as it was"


def test_grokfast_feeds_adamw_the_filtered_gradient() -> None:
    alpha, lam = 0.8, 2.0
    ours = _params(OTHER_SHAPES)
    theirs = _clone(ours)
    config = dataclasses.replace(
        NO_FILTER, grokfast=True, grokfast_alpha=alpha, grokfast_lambda=lam, fallback_weight_decay=0.0
    )
    optimizer = MuonGrokfast(ours.items(), config)
    reference = torch.optim.AdamW(theirs.values(), lr=0.01, betas=(0.9, 0.95), weight_decay=0.0)
    ema: dict[str, torch.Tensor] = {}
    for grads in _grad_sequence(OTHER_SHAPES, steps=5):
        for name, grad in grads.items():
            ema[name] = grad.clone() if name not in ema else alpha * ema[name] + (1 - alpha) * grad
        _apply(optimizer, ours, grads)
        _apply(reference, theirs, {name: grads[name] + lam * ema[name] for name in grads})
        _assert_same(ours, theirs)


def test_adamw_path_matches_torch_adamw() -> None:
    ours = _params(OTHER_SHAPES)
    theirs = _clone(ours)
    config = dataclasses.replace(NO_FILTER, fallback_weight_decay=0.1, fallback_betas=(0.9, 0.95))
    optimizer = MuonGrokfast(ours.items(), config)
    assert set(optimizer.routing.values()) == {"adamw"}
    reference = torch.optim.AdamW(
        [
            {"params": [theirs["embed.weight"]], "weight_decay": 0.1},
            {"params": [theirs["norm.weight"], theirs["hidden.bias"]], "weight_decay": 0.0},
        ],
        lr=0.01, betas=(0.9, 0.95), eps=1e-8, foreach=False,
    )  # fmt: skip
    for grads in _grad_sequence(OTHER_SHAPES, steps=6):
        _apply(optimizer, ours, grads)
        _apply(reference, theirs, grads)
        _assert_same(ours, theirs)


def test_zero_gradient_shrinks_by_lr_times_decay_like_torch() -> None:
    """Decoupled decay: a zero gradient multiplies the weights by exactly (1 - lr*wd); vectors never decay."""
    shapes = {"hidden.a": (8, 12), "embed.weight": (10, 4), "norm.weight": (4,)}
    ours = _params(shapes)
    theirs = _clone(ours)
    optimizer = MuonGrokfast(ours.items(), NO_FILTER)
    torch_muon = torch.optim.Muon(
        [theirs["hidden.a"]], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw"
    )
    torch_adamw = torch.optim.AdamW([theirs["embed.weight"]], lr=0.01, weight_decay=0.05, betas=(0.9, 0.95))
    zeros = {name: torch.zeros(shape) for name, shape in shapes.items()}
    before = {name: p.detach().clone() for name, p in ours.items()}
    _apply(optimizer, ours, zeros)
    _apply(torch_muon, {"hidden.a": theirs["hidden.a"]}, zeros)
    _apply(torch_adamw, {"embed.weight": theirs["embed.weight"]}, zeros)
    assert torch.equal(ours["hidden.a"], before["hidden.a"] * (1 - 0.02 * 0.1))
    assert torch.equal(ours["embed.weight"], before["embed.weight"] * (1 - 0.01 * 0.05))
    assert torch.equal(ours["norm.weight"], before["norm.weight"])
    _assert_same({k: ours[k] for k in ("hidden.a", "embed.weight")}, theirs)


def _stepped(config: MuGrokConfig, grads: list[dict[str, torch.Tensor]]) -> tuple[dict, MuonGrokfast]:
    params = _params({**MATRIX_SHAPES, **OTHER_SHAPES})
    optimizer = MuonGrokfast(params.items(), config)
    for step_grads in grads:
        _apply(optimizer, params, step_grads)
    return params, optimizer


def test_state_dict_round_trip_continues_identically() -> None:
    config = dataclasses.replace(NO_FILTER, grokfast=True, grokfast_lambda=2.0)
    grads = _grad_sequence({**MATRIX_SHAPES, **OTHER_SHAPES}, steps=6)
    original_params, original = _stepped(config, grads[:3])
    original.set_lr_multiplier(0.5)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)
    buffer.seek(0)
    restored_params = _clone(original_params)
    restored = MuonGrokfast(restored_params.items(), config)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    fresh_params = _clone(original_params)
    fresh = MuonGrokfast(fresh_params.items(), config)
    assert restored.lr_multiplier == 0.5
    for step_grads in grads[3:]:
        _apply(original, original_params, step_grads)
        _apply(restored, restored_params, step_grads)
        _apply(fresh, fresh_params, step_grads)
    for name in original_params:
        assert torch.equal(original_params[name], restored_params[name]), name
    assert any(not torch.equal(original_params[n], fresh_params[n]) for n in original_params), "state unused"
    keys = {key for state in original.state.values() for key in state}
    assert {"grokfast_ema", "momentum_buffer", "exp_avg", "exp_avg_sq", "step"} <= keys


def test_lambda_lr_and_lr_multiplier_multiply() -> None:
    """LambdaLR drives group lr, set_lr_multiplier multiplies on top: equal to AdamW at the product lr."""
    ours = _params({"norm.weight": (6,)})
    theirs = _clone(ours)
    optimizer = MuonGrokfast(ours.items(), dataclasses.replace(NO_FILTER, fallback_lr=0.1))
    reference = torch.optim.AdamW(theirs.values(), lr=0.05, weight_decay=0.0, betas=(0.9, 0.95))
    ours_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    theirs_schedule = torch.optim.lr_scheduler.LambdaLR(reference, lambda step: 1.0 / (1 + step))
    optimizer.set_lr_multiplier(0.5)
    for grads in _grad_sequence({"norm.weight": (6,)}, steps=4):
        _apply(optimizer, ours, grads)
        _apply(reference, theirs, grads)
        ours_schedule.step()
        theirs_schedule.step()
        _assert_same(ours, theirs)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 5)
    with pytest.raises(ValueError, match="lr multiplier"):
        optimizer.set_lr_multiplier(0.0)


def test_a_state_dict_naming_the_group_multiplier_lr_scale_loads() -> None:
    """Optimizer states saved before the rename call the group multiplier ``lr_scale``; they load under the new key."""
    grads = _grad_sequence({**MATRIX_SHAPES, **OTHER_SHAPES}, steps=2)
    params, original = _stepped(NO_FILTER, grads[:1])
    original.set_lr_multiplier(0.25)
    old = copy.deepcopy(original.state_dict())  # as read from a file: no buffer shared with ``original``
    old["param_groups"] = [{("lr_scale" if k == "lr_multiplier" else k): v for k, v in g.items()}
                           for g in old["param_groups"]]
    restored_params = _clone(params)
    restored = MuonGrokfast(restored_params.items(), NO_FILTER)
    restored.load_state_dict(old)
    assert restored.lr_multiplier == 0.25
    assert all("lr_scale" not in group for group in restored.param_groups)
    _apply(restored, restored_params, grads[1])  # steps with the renamed key
    _apply(original, params, grads[1])
    for name in params:
        assert torch.equal(params[name], restored_params[name]), name


def test_identical_gradients_give_identical_weights() -> None:
    grads = _grad_sequence({**MATRIX_SHAPES, **OTHER_SHAPES}, steps=3)
    config = MuGrokConfig.from_phase(1)
    first, _ = _stepped(config, grads)
    second, _ = _stepped(config, grads)
    for name in first:
        assert torch.equal(first[name], second[name]), name


def test_parameters_without_gradient_are_left_alone() -> None:
    params = _params(MATRIX_SHAPES)
    optimizer = MuonGrokfast(params.items(), NO_FILTER)
    before = params["hidden.b"].detach().clone()
    params["hidden.a"].grad = torch.ones(16, 32)
    optimizer.step()
    assert torch.equal(params["hidden.b"], before)
    assert params["hidden.b"] not in optimizer.state


def test_training_a_small_network_lowers_its_loss() -> None:
    """The whole optimizer (Phase 1 preset, both paths) fits a tiny regression within 60 steps."""
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 4))
    inputs = torch.randn(64, 8, generator=generator)
    targets = torch.randn(64, 4, generator=generator)
    config = dataclasses.replace(MuGrokConfig.from_phase(1), muon_lr=0.02, fallback_lr=0.02)
    optimizer = MuonGrokfast(model.named_parameters(), config)
    assert set(optimizer.routing.values()) == {"muon", "adamw"}
    losses = []
    for _ in range(60):
        loss = nn.functional.mse_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], (losses[0], losses[-1])


def test_bare_parameters_are_refused() -> None:
    with pytest.raises(TypeError, match="named_parameters"):
        MuonGrokfast(nn.Linear(3, 3).parameters(), NO_FILTER)
    with pytest.raises(ValueError, match="no trainable"):
        MuonGrokfast([], NO_FILTER)
