"""The weights of a bundle as numpy arrays: ternary linears (from the packed file) and float tensors.

A ternary linear keeps its values as float32 {-1, 0, +1} so the matmul runs in BLAS; every product of an
8-bit activation code and a ternary value is an integer, and float32 sums of integers are exact below 2**24,
so ``codes @ T`` equals the integer dot product of an int8 kernel. The output is rescaled once per row by
``weight_scale / activation_scale``, the arithmetic of BitLinear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .safetensors_np import read_safetensors
from .ternary import unpack

PACKED_FORMAT = "agent_forge.packed_ternary.v1"


class WeightsError(ValueError):
    """The packed file is damaged or does not fit the model."""


@dataclass
class Linear:
    """y = x W^T + b; with ``scale`` set, W is ternary and x is quantized per token to ``bits`` bits."""

    weight_t: np.ndarray  # (in, out) float32
    scale: np.ndarray | None  # (out,) weight scale of a ternary layer, None for a float layer
    bias: np.ndarray | None
    bits: int = 8
    eps: float = 1e-5

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.scale is None:
            out = x @ self.weight_t
        else:
            qmax = np.float32(2 ** (self.bits - 1) - 1)
            act_scale = qmax / np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(self.eps))
            codes = np.rint(x * act_scale)  # |x * act_scale| <= qmax by construction: BitLinear's clamp is a no-op
            out = (codes @ self.weight_t) * (self.scale / act_scale)
        return out if self.bias is None else out + self.bias

    @property
    def out_features(self) -> int:
        return int(self.weight_t.shape[1])


def fuse(parts: list[Linear]) -> Linear | None:
    """One Linear computing several that read the same input, or None when they cannot share one call."""
    ternary = {p.scale is not None for p in parts}
    if len(ternary) != 1 or len({(p.bits, p.eps) for p in parts}) != 1:
        return None
    weight_t = np.ascontiguousarray(np.concatenate([p.weight_t for p in parts], axis=1))
    scale = None
    if parts[0].scale is not None:
        scales = [np.broadcast_to(p.scale, (p.out_features,)) for p in parts]
        scale = np.concatenate(scales).astype(np.float32)
    biases = [p.bias if p.bias is not None else np.zeros(p.out_features, np.float32) for p in parts]
    bias = None if all(p.bias is None for p in parts) else np.concatenate(biases).astype(np.float32)
    return Linear(weight_t, scale, bias, parts[0].bits, parts[0].eps)


def _check_block_scales(name: str, block_scales: np.ndarray, scale: np.ndarray) -> None:
    """Every non-zero block carries the layer's scale in fp16; anything else is a damaged file."""
    expected = np.repeat(scale.astype(np.float16).astype(np.float32), block_scales.size // scale.size)
    if expected.shape != block_scales.shape or not np.all((block_scales == 0) | (block_scales == expected)):
        raise WeightsError(f"block scales of {name} disagree with its stored scale")


@dataclass
class Weights:
    """Float tensors by state-dict key and ternary layers by module name."""

    tensors: dict[str, np.ndarray]
    ternary: dict[str, tuple[np.ndarray, np.ndarray]]  # name -> (values (out, in) int8, scale (1,) or (out,))
    bits: int = 8
    eps: float = 1e-5

    def tensor(self, key: str) -> np.ndarray:
        if key not in self.tensors:
            raise WeightsError(f"the weights have no tensor {key}")
        return self.tensors[key]

    def linear(self, name: str) -> Linear:
        bias = self.tensors.get(f"{name}.bias")
        if name in self.ternary:
            values, scale = self.ternary[name]
            weight_t = np.ascontiguousarray(values.T.astype(np.float32))
            return Linear(weight_t, scale.reshape(-1).astype(np.float32), bias, self.bits, self.eps)
        weight = self.tensor(f"{name}.weight")
        return Linear(np.ascontiguousarray(weight.T), None, bias, self.bits, self.eps)


def _ternary_layers(tensors: dict[str, np.ndarray], layers: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, info in layers.items():
        fmt = info["format"]
        scale = tensors.pop(f"{name}.weight.scale").astype(np.float32).reshape(-1)
        values, block_scales = unpack(tensors.pop(f"{name}.weight.{fmt}"), fmt, info["shape"],
                                      bool(info["row_aligned"]))
        _check_block_scales(name, block_scales, scale)
        out[name] = (values, scale)
    return out


def _plain_tensors(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> dict[str, np.ndarray]:
    """int8 rows dequantized, floats widened to float32, tied aliases restored."""
    for key in json.loads(metadata.get("int8", "[]")):
        codes, scale = tensors.pop(f"{key}.int8"), tensors.pop(f"{key}.int8_scale")
        tensors[key] = codes.astype(np.float32) * scale.astype(np.float32)[:, None]
    plain = {key: t.astype(np.float32) if t.dtype.kind == "f" else t for key, t in tensors.items()}
    for alias, target in json.loads(metadata.get("aliases", "{}")).items():
        plain[alias] = plain[target]
    return plain


def load_weights(path: str | Path, bits: int = 8, eps: float = 1e-5) -> Weights:
    """Read a packed ternary safetensors file (``agent_forge.packed_ternary.v1``)."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("format") != PACKED_FORMAT:
        raise WeightsError(f"{path} is not a packed ternary file ({PACKED_FORMAT})")
    tensors = dict(tensors)
    try:
        ternary = _ternary_layers(tensors, json.loads(metadata["ternary"]))
        plain = _plain_tensors(tensors, metadata)
    except (KeyError, ValueError) as err:
        raise WeightsError(f"packed file {path} is incomplete or damaged: {err}") from err
    return Weights(plain, ternary, bits, eps)
