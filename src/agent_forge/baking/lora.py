"""Low-rank adapters for a bake, merged back into the weights at the end.

``LoRALinear`` adds ``scaling * B @ A`` to a frozen base weight. On a ``BitLinear`` the sum goes through
the layer's own ternary quantizer (straight-through gradients to A and B), so the adapter is trained
exactly as the merged layer will compute: merging adds the delta to the shadow weight and the layer's
re-quantization then yields the same ternary weights the adapter forward used. On an ``nn.Linear`` the
delta is a parallel low-rank path, equal to the merged layer up to float rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.quant.bitlinear import BitLinear, dequantized_activations, quantize_weight, straight_through

SKIPPED_MODULES = ("lm_head", "act_head")


@dataclass(frozen=True)
class LoRAConfig:
    """``rank`` of A (rank x in) and B (out x rank); ``alpha / rank`` scales the delta (alpha = rank: 1)."""

    rank: int
    alpha: float | None = None

    @property
    def scaling(self) -> float:
        return float(self.alpha if self.alpha is not None else self.rank) / self.rank


def bitlinear_forward(layer: BitLinear, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``layer``'s forward with ``weight`` in place of its shadow weight (same quantizers, same STE)."""
    inputs = x
    if layer.ramp > 0.0:
        quantized = quantize_weight(weight, layer.config.granularity, layer.config.eps).dequantize()
        weight = straight_through(weight, quantized.to(weight.device), layer.ramp)
        activations = dequantized_activations(x, layer.config.activation_bits, layer.config.eps)
        inputs = straight_through(x, activations, layer.ramp)
    return F.linear(inputs, weight, layer.bias)


class LoRALinear(nn.Module):
    """A frozen linear layer plus a trainable low-rank delta."""

    def __init__(self, base: nn.Linear, config: LoRAConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if isinstance(base, BitLinear) and base.frozen:
            raise ValueError("unfreeze the BitLinear before adding an adapter: its ternary state is fixed")
        self.base, self.scaling = base, config.scaling
        weight = base.weight
        bound = 1.0 / math.sqrt(base.in_features)
        a = torch.rand(config.rank, base.in_features, generator=generator) * 2 * bound - bound
        self.lora_a = nn.Parameter(a.to(device=weight.device, dtype=weight.dtype))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, config.rank, device=weight.device,
                                               dtype=weight.dtype))

    def delta_weight(self) -> torch.Tensor:
        return self.scaling * (self.lora_b @ self.lora_a)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.base, BitLinear):
            return bitlinear_forward(self.base, x, self.base.weight + self.delta_weight())
        low_rank = F.linear(F.linear(x, self.lora_a), self.lora_b)
        return self.base(x) + self.scaling * low_rank


@dataclass
class LoRAHandle:
    """What ``merge_lora`` needs to undo ``apply_lora``: wrapped names, original trainable flags."""

    names: list[str]
    trainable: dict[str, bool] = field(default_factory=dict)


def lora_targets(model: nn.Module, rank: int) -> list[str]:
    """Linears worth an adapter: not the (tied) head nor the halting head, both sides above ``rank``."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or any(part in SKIPPED_MODULES for part in name.split(".")):
            continue
        if min(module.weight.shape) > rank:
            names.append(name)
    return names


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def apply_lora(model: nn.Module, config: LoRAConfig, generator: torch.Generator | None = None) -> LoRAHandle:
    """Freeze every parameter of ``model`` and wrap its target linears with trainable adapters."""
    if config.rank < 1:
        raise ValueError(f"LoRA rank must be at least 1, got {config.rank}")
    handle = LoRAHandle(lora_targets(model, config.rank),
                        {n: p.requires_grad for n, p in model.named_parameters()})
    for param in model.parameters():
        param.requires_grad_(False)
    for name in handle.names:
        _set_module(model, name, LoRALinear(model.get_submodule(name), config, generator))
    return handle


@torch.no_grad()
def merge_lora(model: nn.Module, handle: LoRAHandle) -> None:
    """Fold each adapter into its base weight, put the base layers back and restore the trainable flags."""
    for name in handle.names:
        wrapper = model.get_submodule(name)
        if not isinstance(wrapper, LoRALinear):
            raise ValueError(f"{name} holds no adapter (merged twice?)")
        wrapper.base.weight.add_(wrapper.delta_weight())
        _set_module(model, name, wrapper.base)
    for name, param in model.named_parameters():
        param.requires_grad_(handle.trainable.get(name, True))
