"""Write the packed ternary weights a bundle's runtime reads (``quant/packed_io`` format)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from agent_forge.quant.bitlinear import bitlinear_modules
from agent_forge.quant.packed_io import FloatDtype, PackedSaveConfig, save_packed
from agent_forge.quant.ternary_pack import TernaryFormat


@dataclass(frozen=True)
class ActivationSettings:
    """The per-token activation quantization every BitLinear of the model shares."""

    bits: int = 8
    eps: float = 1e-5
    ternary_layers: int = 0


def activation_settings(model: nn.Module) -> ActivationSettings:
    """Bits and eps of the BitLinear layers; raises when they differ or a layer is not fully quantized."""
    layers = bitlinear_modules(model)
    if not layers:
        return ActivationSettings()
    settings = {(m.config.activation_bits, m.config.eps) for m in layers.values()}
    if len(settings) != 1:
        raise ValueError(f"BitLinear layers disagree on activation quantization: {sorted(settings)}")
    partial = sorted(name for name, m in layers.items() if float(m.ramp) != 1.0)
    if partial:
        raise ValueError(f"ternary export needs fully quantized layers (ramp 1); not so: {partial[:3]}")
    bits, eps = settings.pop()
    return ActivationSettings(int(bits), float(eps), len(layers))


def weights_file_name(fmt: TernaryFormat) -> str:
    return f"model.{fmt}.safetensors"


def export_ternary(model: nn.Module, folder: str | Path, fmt: TernaryFormat = "tq2_0",
                   float_dtype: FloatDtype = "float16", int8_embeddings: bool = False) -> Path:
    """BitLinears as TQ2_0/TQ1_0 blocks, other tensors in ``float_dtype`` (embeddings int8 if asked)."""
    activation_settings(model)
    path = Path(folder) / weights_file_name(fmt)
    save_packed(model, path, PackedSaveConfig(fmt, float_dtype, int8_embeddings))
    path.chmod(0o644)  # the atomic write leaves its temporary file's owner-only mode; a bundle is shared
    return path
