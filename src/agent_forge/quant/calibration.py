"""Calibration of a BitNet conversion: what ternarising each layer does to its output on real inputs.

BitNet b1.58 needs no calibrated scales (weights use absmean, activations a per-token absmax chosen at run
time), so calibration here measures rather than fits: on a few training batches it records, per
BitLinear, the input range, the share of zero weights and the relative output error of the ternary layer
against the same layer in full precision (given the quantized network's own inputs), and the model's
loss with every layer in full precision (ramp 0) and ternary (ramp 1). The worst layers say where a
quality loss comes from; the two losses say how large it is before any held-out evaluation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agent_forge.quant.bitlinear import BitLinear, bitlinear_modules, set_ramp

LossFn = Callable[[nn.Module, Tensor], Tensor]


@dataclass
class LayerCalibration:
    """Statistics of one BitLinear over the calibration batches."""

    input_absmax: float = 0.0
    error_energy: float = 0.0
    signal_energy: float = 0.0
    zeros: int = 0
    weights: int = 0

    @property
    def relative_error(self) -> float:
        """``||y_ternary - y_fp||^2 / ||y_fp||^2`` summed over every output of the calibration set."""
        return self.error_energy / self.signal_energy if self.signal_energy else 0.0


@dataclass
class CalibrationReport:
    layers: dict[str, LayerCalibration] = field(default_factory=dict)
    loss_full_precision: float = float("nan")
    loss_ternary: float = float("nan")
    n_batches: int = 0

    @property
    def sparsity(self) -> float:
        """Share of zero ternary weights over all BitLinear weights."""
        total = sum(layer.weights for layer in self.layers.values())
        return sum(layer.zeros for layer in self.layers.values()) / total if total else 0.0

    def worst_layers(self, k: int = 3) -> list[tuple[str, float]]:
        ranked = sorted(self.layers.items(), key=lambda item: item[1].relative_error, reverse=True)
        return [(name, stats.relative_error) for name, stats in ranked[:k]]


def _hook(stats: LayerCalibration) -> Callable[[BitLinear, tuple[Tensor, ...], Tensor], None]:
    def record(module: BitLinear, args: tuple[Tensor, ...], output: Tensor) -> None:
        x = args[0].detach().float()
        reference = F.linear(x, module.weight.float(), None if module.bias is None else module.bias.float())
        stats.input_absmax = max(stats.input_absmax, float(x.abs().max()))
        stats.error_energy += float((output.detach().float() - reference).pow(2).sum())
        stats.signal_energy += float(reference.pow(2).sum())

    return record


@torch.no_grad()
def _mean_loss(model: nn.Module, batches: list[Tensor], loss_fn: LossFn) -> float:
    losses = [float(loss_fn(model, batch)) for batch in batches]
    return sum(losses) / len(losses) if losses else float("nan")


@torch.no_grad()
def calibrate(
    model: nn.Module, batches: Iterable[Tensor], loss_fn: LossFn
) -> CalibrationReport:
    """Measure every BitLinear of ``model`` on ``batches``; leaves the model fully quantized (ramp 1).

    ``loss_fn(model, batch)`` returns the scalar loss of one batch (the caller's objective).
    """
    layers = bitlinear_modules(model)
    if not layers:
        raise ValueError("the model has no BitLinear layer; call replace_linears() first")
    batches = list(batches)
    was_training = model.training
    model.eval()
    report = CalibrationReport(n_batches=len(batches))
    set_ramp(model, 0.0)
    report.loss_full_precision = _mean_loss(model, batches, loss_fn)
    set_ramp(model, 1.0)
    report.layers = {name: LayerCalibration() for name in layers}
    handles = [layer.register_forward_hook(_hook(report.layers[name])) for name, layer in layers.items()]
    try:
        report.loss_ternary = _mean_loss(model, batches, loss_fn)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    for name, layer in layers.items():
        values = layer.ternary_weight().values
        report.layers[name].zeros, report.layers[name].weights = int((values == 0).sum()), values.numel()
    return report
