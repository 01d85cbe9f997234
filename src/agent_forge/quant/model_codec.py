"""A BitLinear model as the tensors Phase 8 compresses, and the way back to a runnable model.

Every BitLinear becomes its Phase 4 packed blocks (``<layer>.weight.<tq1_0|tq2_0>``, uint8) and its exact
scale (``<layer>.weight.scale``, float32); the full-precision shadow weights are dropped, because a frozen
BitLinear computes with the ternary values only. Every other floating tensor is stored in ``float_dtype``
(fp16 by default, as the Phase 4 packed file does), integers unchanged, tied tensors once. The
:class:`ModelLayout` says how to put the tensors back; it is JSON-ready so it can ride in the container's
header and the file alone rebuilds the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from agent_forge.quant.bitlinear import (
    BitLinearConfig,
    TernaryWeight,
    bitlinear_modules,
    replace_linears,
    ternary_state,
)
from agent_forge.quant.ternary_pack import PackedTernary, TernaryFormat, pack_ternary, unpack_ternary

FloatDtype = Literal["float16", "float32", "bfloat16"]
_BITLINEAR_KEYS = ("weight", "ternary", "weight_scale")


@dataclass(frozen=True)
class ModelCodecConfig:
    """Block format of the ternary layers and storage dtype of the other floating tensors."""

    ternary_format: TernaryFormat = "tq1_0"
    float_dtype: FloatDtype = "float16"


@dataclass(frozen=True)
class ModelLayout:
    """How container tensors map back onto a model's state."""

    ternary: dict[str, dict] = field(default_factory=dict)  # layer -> shape, format, row_aligned
    aliases: dict[str, str] = field(default_factory=dict)  # tied key -> stored key
    dtypes: dict[str, str] = field(default_factory=dict)  # stored key -> dtype in the model
    bitlinear: dict = field(default_factory=dict)  # BitLinearConfig fields (granularity, activation bits)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping) -> ModelLayout:
        return cls(**{key: dict(data.get(key, {})) for key in ("ternary", "aliases", "dtypes", "bitlinear")})


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _storage_key(tensor: Tensor) -> tuple:
    return (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tuple(tensor.stride()), tensor.dtype)


def _ternary_tensors(name: str, weight: TernaryWeight, fmt: TernaryFormat) -> tuple[dict[str, Tensor], dict]:
    scale = weight.scale.detach().float().reshape(-1).cpu()
    row_aligned = scale.numel() > 1
    packed = pack_ternary(weight.values.detach().cpu().numpy(), scale.numpy(), fmt, row_aligned)
    tensors = {f"{name}.weight.{fmt}": torch.from_numpy(packed.data), f"{name}.weight.scale": scale}
    return tensors, {"shape": list(packed.shape), "format": fmt, "row_aligned": row_aligned}


def _bitlinear_config(model: nn.Module) -> dict:
    layers = list(bitlinear_modules(model).values())
    if not layers:
        return {}
    config = layers[0].config
    return {"granularity": config.granularity, "activation_bits": config.activation_bits, "eps": config.eps}


def model_tensors(
    model: nn.Module, config: ModelCodecConfig | None = None
) -> tuple[dict[str, Tensor], ModelLayout]:
    """The tensors to compress (packed ternary layers, cast floats, ties once) and their layout."""
    config = config or ModelCodecConfig()
    state = model.state_dict(keep_vars=False)
    tensors: dict[str, Tensor] = {}
    ternary: dict[str, dict] = {}
    for name, weight in ternary_state(model).items():
        for suffix in _BITLINEAR_KEYS:
            state.pop(f"{name}.{suffix}", None)
        layer_tensors, ternary[name] = _ternary_tensors(name, weight, config.ternary_format)
        tensors.update(layer_tensors)
    first: dict[tuple, str] = {}
    aliases, dtypes = {}, {}
    cast = getattr(torch, config.float_dtype)
    for key, tensor in state.items():
        storage = _storage_key(tensor)
        if storage in first:
            aliases[key] = first[storage]
            continue
        first[storage] = key
        dtypes[key] = _dtype_name(tensor.dtype)
        tensor = tensor.detach().cpu()
        tensors[key] = (tensor.to(cast) if tensor.is_floating_point() else tensor).contiguous()
    layout = ModelLayout(ternary, aliases, dtypes, _bitlinear_config(model))
    return tensors, layout


def unpack_layers(tensors: Mapping[str, Tensor], layout: ModelLayout) -> dict[str, TernaryWeight]:
    """The exact ternary state of every packed layer."""
    out = {}
    for name, info in layout.ternary.items():
        fmt = info["format"]
        data = np.ascontiguousarray(tensors[f"{name}.weight.{fmt}"].numpy())
        packed = PackedTernary(data, tuple(info["shape"]), fmt, bool(info["row_aligned"]))
        values, _ = unpack_ternary(packed)
        scale = tensors[f"{name}.weight.scale"].float().reshape(-1)
        out[name] = TernaryWeight(torch.from_numpy(np.ascontiguousarray(values)).to(torch.int8), scale)
    return out


def plain_state(tensors: Mapping[str, Tensor], layout: ModelLayout) -> dict[str, Tensor]:
    """Every non-ternary tensor in its model dtype, tied copies included."""
    state = {key: tensors[key].to(getattr(torch, dtype)) for key, dtype in layout.dtypes.items()}
    for alias, target in layout.aliases.items():
        state[alias] = state[target]
    return state


def _ensure_bitlinear(model: nn.Module, layout: ModelLayout) -> None:
    """Swap the layout's linears for BitLinear on a plain skeleton (a no-op when they already are)."""
    missing = set(layout.ternary) - set(bitlinear_modules(model))
    if missing:
        config = BitLinearConfig(**layout.bitlinear) if layout.bitlinear else None
        replace_linears(model, keep=lambda name: name not in missing, config=config)
    absent = set(layout.ternary) - set(bitlinear_modules(model))
    if absent:
        raise ValueError(f"the model has no linear layer named {sorted(absent)[:3]}")


def load_tensors_into(model: nn.Module, tensors: Mapping[str, Tensor], layout: ModelLayout) -> nn.Module:
    """Rebuild ``model``'s state from container tensors: BitLinears frozen at the stored ternary values
    (their shadow weight set to the dequantized values), everything else loaded strictly."""
    _ensure_bitlinear(model, layout)
    layers = bitlinear_modules(model)
    for name, weight in unpack_layers(tensors, layout).items():
        layer = layers[name]
        with torch.no_grad():
            layer.weight.copy_(weight.dequantize().to(layer.weight.dtype))
        layer.freeze(weight)
    result = model.load_state_dict(plain_state(tensors, layout), strict=False)
    covered = {f"{name}.{suffix}" for name in layout.ternary for suffix in _BITLINEAR_KEYS}
    missing = sorted(set(result.missing_keys) - covered)
    if missing or result.unexpected_keys:
        raise ValueError(f"tensors do not fit the model: missing {missing[:3]}, "
                         f"unexpected {sorted(result.unexpected_keys)[:3]}")
    return model
