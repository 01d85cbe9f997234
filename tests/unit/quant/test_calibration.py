"""Calibration measures what ternarising does per layer, leaves the model fully quantized and hook-free."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.quant.bitlinear import BitLinear, bitlinear_modules, replace_linears
from agent_forge.quant.calibration import calibrate


class TwoLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.exact = nn.Linear(32, 32, bias=False)
        self.gauss = nn.Linear(32, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gauss(torch.relu(self.exact(x)))


def _loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(model(batch), batch[:, :8])


def _setup() -> tuple[TwoLayer, list[torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    model = TwoLayer()
    with torch.no_grad():  # already ternary times one scale: only activation rounding remains
        model.exact.weight.copy_(0.05 * (2 * torch.randint(0, 2, (32, 32), generator=gen).float() - 1))
        model.gauss.weight.copy_(torch.randn(8, 32, generator=gen) * torch.rand(8, 32, generator=gen) ** 3)
    return model, [torch.randn(16, 32, generator=gen) for _ in range(3)]


def test_calibration_ranks_layers_and_reports_both_losses() -> None:
    model, batches = _setup()
    with torch.no_grad():
        expected_fp = sum(float(_loss(model, b)) for b in batches) / len(batches)
    replace_linears(model)
    report = calibrate(model, batches, _loss)
    assert report.n_batches == 3
    assert report.loss_full_precision == pytest.approx(expected_fp, rel=1e-6)
    assert report.loss_ternary != report.loss_full_precision
    exact, gauss = report.layers["exact"], report.layers["gauss"]
    assert exact.relative_error < 1e-3 < gauss.relative_error
    assert report.worst_layers(1)[0][0] == "gauss"
    assert exact.input_absmax == pytest.approx(max(float(b.abs().max()) for b in batches))
    layers = bitlinear_modules(model).values()
    zeros = sum(int((layer.ternary_weight().values == 0).sum()) for layer in layers)
    assert report.sparsity == pytest.approx(zeros / (32 * 32 + 8 * 32))


def test_calibration_leaves_the_model_quantized_and_without_hooks() -> None:
    model, batches = _setup()
    replace_linears(model)
    model.train()
    calibrate(model, batches, _loss)
    assert model.training
    for layer in bitlinear_modules(model).values():
        assert isinstance(layer, BitLinear) and layer.ramp == 1.0 and not layer._forward_hooks


def test_calibration_needs_bitlinear_layers() -> None:
    model, batches = _setup()
    with pytest.raises(ValueError, match="replace_linears"):
        calibrate(model, batches, _loss)
