"""BitNet b1.58 linear layer (Ma et al. 2024) for quantization-aware training and its frozen ternary state.

Weights are quantized to {-1, 0, +1} times an absmean scale, ``t = RoundClip(W / mean|W|, -1, 1)``;
activations to 8 bits with one absmax scale per token. Training keeps full-precision shadow weights and
passes gradients straight through both quantizers (STE). ``ramp`` in [0, 1] blends the full-precision
forward (0) into the quantized one (1) so a fine-tuning schedule can quantize gradually.

Scale granularity defaults to ``"tensor"``, as in the paper: one scale shared by every 256-weight block
packs exactly into GGUF's TQ1_0/TQ2_0 block scales whatever the row length. ``"channel"`` (one scale per
output row, the spec's sketch) packs exactly only when rows are padded to whole blocks, which costs up
to a third more bytes for rows of 384. Scales are rounded to fp16, the precision the packed blocks keep,
so the in-memory model and the file compute the same thing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Granularity = Literal["tensor", "channel"]
_FP16_MAX = 65504.0


@dataclass(frozen=True)
class BitLinearConfig:
    """How a :class:`BitLinear` quantizes; ``ramp`` is the starting blend (1 = fully quantized)."""

    granularity: Granularity = "tensor"
    activation_bits: int = 8
    eps: float = 1e-5
    ramp: float = 1.0

    def __post_init__(self) -> None:
        if self.granularity not in ("tensor", "channel"):
            raise ValueError(f"granularity must be 'tensor' or 'channel', got {self.granularity!r}")
        if not 2 <= self.activation_bits <= 8:
            raise ValueError("activation_bits must be between 2 and 8")
        _check_ramp(self.ramp)


@dataclass(frozen=True)
class TernaryWeight:
    """A quantized weight: int8 values in {-1, 0, 1} of shape (out, in) and a float32 scale (1,) or (out,)."""

    values: Tensor
    scale: Tensor

    def dequantize(self) -> Tensor:
        return self.values.float() * self.scale.reshape(-1, 1)


def _check_ramp(ramp: float) -> None:
    if not 0.0 <= float(ramp) <= 1.0:
        raise ValueError(f"ramp must be in [0, 1], got {ramp}")


def absmean_scale(weight: Tensor, granularity: Granularity = "tensor", eps: float = 1e-5) -> Tensor:
    """``mean |W|`` over the tensor, shape (1,), or over each row, shape (out,); fp16-representable."""
    magnitude = weight.detach().float().abs()
    mean = magnitude.mean().reshape(1) if granularity == "tensor" else magnitude.mean(dim=1)
    return mean.clamp(min=eps, max=_FP16_MAX).to(torch.float16).to(torch.float32)


def ternarize(weight: Tensor, scale: Tensor) -> Tensor:
    """``RoundClip(W / scale, -1, 1)`` as int8; ``scale`` is (1,) or one per row."""
    scaled = weight.detach().float() / scale.reshape(-1, 1)
    return scaled.round().clamp(-1, 1).to(torch.int8)


def quantize_weight(weight: Tensor, granularity: Granularity = "tensor", eps: float = 1e-5) -> TernaryWeight:
    """Absmean ternary quantization of a 2-D weight."""
    scale = absmean_scale(weight, granularity, eps)
    return TernaryWeight(values=ternarize(weight, scale), scale=scale)


def quantize_activations(x: Tensor, bits: int = 8, eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Per-token absmax quantization: integer codes (as float32) and the scale ``qmax / max|x|``."""
    qmax = 2 ** (bits - 1) - 1
    xf = x.detach().float()
    scale = qmax / xf.abs().amax(dim=-1, keepdim=True).clamp(min=eps)
    codes = (xf * scale).round().clamp(-qmax - 1, qmax)
    return codes, scale


def dequantized_activations(x: Tensor, bits: int = 8, eps: float = 1e-5) -> Tensor:
    """The values the quantized activations stand for, ``codes / scale``, in ``x``'s dtype."""
    codes, scale = quantize_activations(x, bits, eps)
    return (codes / scale).to(x.dtype)


class _StraightThrough(torch.autograd.Function):
    """Forward the quantized value exactly; pass the gradient to the full-precision input unchanged."""

    @staticmethod
    def forward(ctx: Any, full: Tensor, value: Tensor) -> Tensor:
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def straight_through(full: Tensor, quantized: Tensor, ramp: float) -> Tensor:
    """``lerp(full, quantized, ramp)`` in the forward pass, identity gradient to ``full`` (STE)."""
    if ramp == 0.0:
        return full
    blended = torch.lerp(full.detach(), quantized.to(full.dtype), float(ramp))
    return _StraightThrough.apply(full, blended)


class BitLinear(nn.Linear):
    """``nn.Linear`` whose forward uses ternary weights and 8-bit per-token activations.

    After :func:`freeze_ternary` the ternary values and scale are buffers (``ternary``,
    ``weight_scale``) and the forward uses them instead of re-quantizing the shadow weights.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        config: BitLinearConfig | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.config = config or BitLinearConfig()
        self.ramp = self.config.ramp
        self.register_buffer("ternary", None)
        self.register_buffer("weight_scale", None)

    @property
    def frozen(self) -> bool:
        return self.ternary is not None

    def ternary_weight(self) -> TernaryWeight:
        """The frozen ternary state, or the quantization of the current shadow weights."""
        if self.ternary is not None and self.weight_scale is not None:
            return TernaryWeight(values=self.ternary, scale=self.weight_scale)
        return quantize_weight(self.weight, self.config.granularity, self.config.eps)

    def freeze(self, state: TernaryWeight | None = None) -> None:
        """Fix the ternary values and scale (current quantization unless ``state`` is given)."""
        state = state or quantize_weight(self.weight, self.config.granularity, self.config.eps)
        self.ternary = state.values.to(device=self.weight.device, dtype=torch.int8).clone()
        self.weight_scale = state.scale.to(device=self.weight.device, dtype=torch.float32).clone()

    def unfreeze(self) -> None:
        self.ternary = None
        self.weight_scale = None

    def forward(self, x: Tensor) -> Tensor:
        _check_ramp(self.ramp)
        weight, inputs = self.weight, x
        if self.ramp > 0.0:
            quantized = self.ternary_weight().dequantize()
            weight = straight_through(self.weight, quantized, self.ramp)
            activations = dequantized_activations(x, self.config.activation_bits, self.config.eps)
            inputs = straight_through(x, activations, self.ramp)
        return F.linear(inputs, weight, self.bias)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: Any) -> None:
        """Accept a frozen state into an unfrozen layer by creating the buffers first."""
        if self.ternary is None and prefix + "ternary" in state_dict:
            self.ternary = torch.empty_like(state_dict[prefix + "ternary"], device=self.weight.device)
            scale = state_dict[prefix + "weight_scale"]
            self.weight_scale = torch.empty_like(scale, device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def extra_repr(self) -> str:
        granularity = self.config.granularity
        return f"{super().extra_repr()}, granularity={granularity}, ramp={self.ramp}, frozen={self.frozen}"


KeepRule = Callable[[str], bool] | set[str] | frozenset[str] | None


def _keep_predicate(keep: KeepRule) -> Callable[[str], bool]:
    """A set keeps a module when it names the full path or the last component (``"lm_head"``)."""
    if keep is None:
        return lambda name: False
    if callable(keep):
        return keep
    names = frozenset(keep)
    return lambda name: name in names or name.rsplit(".", 1)[-1] in names


def _shared_parameter_ids(model: nn.Module) -> set[int]:
    """Parameters reached through more than one module, e.g. a head tied to the embedding."""
    seen: set[int] = set()
    shared: set[int] = set()
    for _, param in model.named_parameters(remove_duplicate=False):
        (shared if id(param) in seen else seen).add(id(param))
    return shared


def _replaceable_linears(model: nn.Module, keep: Callable[[str], bool]) -> list[tuple[str, nn.Linear]]:
    """Linears to swap: not kept, not tied, not BitLinear already, not inside MultiheadAttention
    (which reads ``out_proj.weight`` directly and would silently bypass the swap)."""
    shared = _shared_parameter_ids(model)
    skip_prefixes = [name + "." for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or isinstance(module, BitLinear) or not name:
            continue
        if keep(name) or id(module.weight) in shared or any(name.startswith(p) for p in skip_prefixes):
            continue
        chosen.append((name, module))
    return chosen


def bitlinear_from(linear: nn.Linear, config: BitLinearConfig | None = None) -> BitLinear:
    """A BitLinear with a copy of ``linear``'s weights, device, dtype and train/eval mode."""
    weight = linear.weight
    layer = BitLinear(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        device=weight.device,
        dtype=weight.dtype,
        config=config,
    )
    with torch.no_grad():
        layer.weight.copy_(weight)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias)
            layer.bias.requires_grad_(linear.bias.requires_grad)
    layer.weight.requires_grad_(weight.requires_grad)
    return layer.train(linear.training)


def replace_linears(
    model: nn.Module, keep: KeepRule = None, config: BitLinearConfig | None = None
) -> list[str]:
    """Swap every ``nn.Linear`` of ``model`` for a :class:`BitLinear` in place; return the names swapped.

    ``keep`` is a set of module names (full path or last component) or a predicate on the name. Linears
    whose weight is shared with another module (tied heads) are always kept: they are embeddings.
    """
    replaced = []
    for name, linear in _replaceable_linears(model, _keep_predicate(keep)):
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child_name, bitlinear_from(linear, config))
        replaced.append(name)
    return replaced


def bitlinear_modules(model: nn.Module) -> dict[str, BitLinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, BitLinear)}


def set_ramp(model: nn.Module, ramp: float) -> int:
    """Set the quantization blend of every BitLinear (for a gradual QAT schedule); returns how many."""
    _check_ramp(ramp)
    layers = bitlinear_modules(model)
    for layer in layers.values():
        layer.ramp = float(ramp)
    return len(layers)


def freeze_ternary(model: nn.Module) -> list[str]:
    """Fix every BitLinear's ternary values and scale from its current weights; returns their names."""
    layers = bitlinear_modules(model)
    for layer in layers.values():
        layer.freeze()
    return list(layers)


def ternary_state(model: nn.Module) -> dict[str, TernaryWeight]:
    """The int8 ternary values and scale of every BitLinear, keyed by module name."""
    return {name: layer.ternary_weight() for name, layer in bitlinear_modules(model).items()}


def ternary_layout(model: nn.Module) -> dict[str, Any] | None:
    """What rebuilds ``model``'s BitLinear layers on a fresh copy (``make_ternary``): their names, the scale
    granularity, the activation bits and whether they are frozen; None for a model without any."""
    layers = bitlinear_modules(model)
    if not layers:
        return None
    configs = {(m.config.granularity, m.config.activation_bits) for m in layers.values()}
    frozen = {m.frozen for m in layers.values()}
    if len(configs) > 1 or len(frozen) > 1:
        raise ValueError("the BitLinear layers of one model must share one set-up and be all frozen or none")
    (granularity, activation_bits), = configs
    return {"modules": sorted(layers), "granularity": granularity, "activation_bits": activation_bits,
            "frozen": frozen.pop()}


def make_ternary(model: nn.Module, layout: dict[str, Any]) -> None:
    """Swap the linears that ``layout`` (``ternary_layout``'s dict) names for BitLinear, frozen when it says so."""
    wanted = set(layout["modules"])
    config = BitLinearConfig(granularity=layout["granularity"], activation_bits=int(layout["activation_bits"]))
    replace_linears(model, keep=lambda name: name not in wanted, config=config)
    missing = wanted - set(bitlinear_modules(model))
    if missing:
        raise ValueError(f"the ternary layout names linears this model lacks: {sorted(missing)[:3]}")
    if layout.get("frozen"):
        freeze_ternary(model)
