"""BitLinear: absmean ternary weights, 8-bit per-token activations, STE, ramp, replacement and freezing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.quant.bitlinear import (
    BitLinear,
    BitLinearConfig,
    dequantized_activations,
    freeze_ternary,
    quantize_activations,
    quantize_weight,
    replace_linears,
    set_ramp,
    ternary_state,
)


def _layer(in_features: int = 48, out_features: int = 20, seed: int = 0, **config: object) -> BitLinear:
    torch.manual_seed(seed)
    return BitLinear(in_features, out_features, bias=True, config=BitLinearConfig(**config))


def _reference_output(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, per_row: bool
) -> torch.Tensor:
    """BitNet b1.58 forward written out from the paper's formulas, independent of the module."""
    mean = weight.abs().mean(dim=1, keepdim=True) if per_row else weight.abs().mean()
    scale = mean.clamp(min=1e-5).half().float()
    ternary = (weight / scale).round().clamp(-1, 1)
    x_scale = 127.0 / x.abs().amax(dim=-1, keepdim=True).clamp(min=1e-5)
    x_q = (x * x_scale).round().clamp(-128, 127) / x_scale
    return x_q @ (ternary * scale).T + bias


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_weights_are_ternary_with_absmean_scale(granularity: str) -> None:
    weight = torch.randn(32, 70, generator=torch.Generator().manual_seed(1)) * 0.05
    state = quantize_weight(weight, granularity)
    assert state.values.dtype == torch.int8
    assert set(state.values.unique().tolist()) == {-1, 0, 1}
    mean = weight.abs().mean().reshape(1) if granularity == "tensor" else weight.abs().mean(dim=1)
    assert torch.equal(state.scale, mean.half().float())
    assert torch.allclose(state.scale, mean, rtol=1e-3)
    expected = (weight / state.scale.reshape(-1, 1)).round().clamp(-1, 1).to(torch.int8)
    assert torch.equal(state.values, expected)


def test_ternary_share_of_zeros_is_plausible_for_gaussian_weights() -> None:
    # |w| < 0.5 * mean|w| for a Gaussian: P(|z| < 0.5 * sqrt(2/pi)) = 0.31.
    weight = torch.randn(256, 256, generator=torch.Generator().manual_seed(2))
    zero_share = (quantize_weight(weight).values == 0).float().mean().item()
    assert 0.28 < zero_share < 0.34


def test_activation_quantization_error_is_within_half_a_step() -> None:
    x = torch.randn(5, 7, 64, generator=torch.Generator().manual_seed(3)) * 3
    codes, _ = quantize_activations(x)
    assert codes.min() >= -128 and codes.max() <= 127
    assert torch.equal(codes, codes.round())
    assert torch.all(codes.abs().amax(dim=-1) == 127)
    step = x.abs().amax(dim=-1, keepdim=True) / 127
    error = (dequantized_activations(x) - x).abs()
    assert torch.all(error <= step / 2 + 1e-6)
    assert error.max() > 0


def test_ramp_zero_is_exactly_nn_linear() -> None:
    layer = _layer(ramp=0.0)
    linear = nn.Linear(48, 20)
    linear.load_state_dict({"weight": layer.weight.detach(), "bias": layer.bias.detach()})
    x = torch.randn(4, 48)
    assert torch.equal(layer(x), linear(x))


@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_ramp_one_is_the_bitnet_formula(granularity: str) -> None:
    layer = _layer(granularity=granularity)
    x = torch.randn(3, 6, 48, generator=torch.Generator().manual_seed(4))
    expected = _reference_output(x, layer.weight.detach(), layer.bias.detach(), granularity == "channel")
    assert torch.allclose(layer(x), expected, atol=1e-6, rtol=1e-5)
    assert not torch.allclose(layer(x), F.linear(x, layer.weight, layer.bias), atol=1e-3)


def test_intermediate_ramp_blends_full_and_quantized() -> None:
    layer = _layer(ramp=0.25)
    x = torch.randn(2, 48)
    state = layer.ternary_weight()
    weight = torch.lerp(layer.weight.detach(), state.dequantize(), 0.25)
    inputs = torch.lerp(x, dequantized_activations(x), 0.25)
    assert torch.allclose(layer(x), F.linear(inputs, weight, layer.bias), atol=1e-6)


def test_straight_through_gradient_equals_dequantized_linear_gradient() -> None:
    layer = _layer()
    x = torch.randn(6, 48, generator=torch.Generator().manual_seed(5), requires_grad=True)
    target = torch.randn(6, 20, generator=torch.Generator().manual_seed(6))
    F.mse_loss(layer(x), target).backward()

    deq_weight = layer.ternary_weight().dequantize().clone().requires_grad_(True)
    deq_x = dequantized_activations(x.detach()).requires_grad_(True)
    F.mse_loss(F.linear(deq_x, deq_weight, layer.bias.detach()), target).backward()

    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    assert torch.allclose(layer.weight.grad, deq_weight.grad, atol=1e-7)
    assert torch.allclose(x.grad, deq_x.grad, atol=1e-7)


def test_ste_training_lowers_the_loss_of_a_quantized_layer() -> None:
    generator = torch.Generator().manual_seed(7)
    teacher = torch.randn(8, 32, generator=generator)
    x = torch.randn(256, 32, generator=generator)
    y = x @ teacher.T
    layer = _layer(32, 8, seed=8)
    optimizer = torch.optim.Adam(layer.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_ramp_is_validated() -> None:
    with pytest.raises(ValueError):
        BitLinearConfig(ramp=1.5)
    model = nn.Sequential(_layer(), nn.ReLU(), _layer(20, 4))
    assert set_ramp(model, 0.5) == 2
    assert all(m.ramp == 0.5 for m in model if isinstance(m, BitLinear))
    with pytest.raises(ValueError):
        set_ramp(model, -0.1)


class _TinyLM(nn.Module):
    """Embedding, attention made of nn.Linear, an MLP, MultiheadAttention and a tied head."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(50, 16)
        self.q_proj = nn.Linear(16, 16, bias=False)
        self.mlp = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16))
        self.mha = nn.MultiheadAttention(16, 2, batch_first=True)
        self.router = nn.Linear(16, 16)
        self.lm_head = nn.Linear(16, 50, bias=False)
        self.lm_head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(ids)
        h = h + self.q_proj(h) + self.mlp(h) + self.router(h)
        h = h + self.mha(h, h, h, need_weights=False)[0]
        return self.lm_head(h)


def test_replace_linears_swaps_all_but_kept_tied_and_mha() -> None:
    torch.manual_seed(9)
    model = _TinyLM()
    ids = torch.randint(0, 50, (2, 5))
    before = model(ids)
    replaced = replace_linears(model, keep={"router"}, config=BitLinearConfig(ramp=0.0))
    assert replaced == ["q_proj", "mlp.0", "mlp.2"]
    assert isinstance(model.mlp[2], BitLinear) and type(model.router) is nn.Linear
    assert type(model.lm_head) is nn.Linear and model.lm_head.weight is model.embed.weight
    assert not isinstance(model.mha.out_proj, BitLinear)
    assert torch.equal(model(ids), before)
    set_ramp(model, 1.0)
    assert not torch.allclose(model(ids), before, atol=1e-4)


def test_replace_linears_accepts_a_predicate() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    assert replace_linears(model, keep=lambda name: name == "1") == ["0"]
    assert isinstance(model[0], BitLinear) and not isinstance(model[1], BitLinear)


def test_freeze_fixes_the_ternary_state_and_survives_state_dict() -> None:
    model = nn.Sequential(_layer(), nn.ReLU(), _layer(20, 4, seed=1))
    x = torch.randn(3, 48)
    assert freeze_ternary(model) == ["0", "2"]
    frozen_out = model(x)
    state = ternary_state(model)
    assert set(state) == {"0", "2"} and state["0"].values.dtype == torch.int8
    with torch.no_grad():
        model[0].weight.mul_(3.0).add_(0.01)
    assert torch.equal(model(x), frozen_out)

    fresh = nn.Sequential(_layer(seed=5), nn.ReLU(), _layer(20, 4, seed=6))
    fresh.load_state_dict(model.state_dict())
    assert fresh[0].frozen and torch.equal(fresh(x), frozen_out)
    model[0].unfreeze()
    assert not torch.equal(model(x), frozen_out)
