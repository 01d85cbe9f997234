"""State-dict checks shared by the merge methods: same keys, shapes and dtypes, and how to compute."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

StateDict = dict[str, Tensor]
StateLike = Mapping[str, Tensor]


def check_compatible(states: Sequence[StateLike]) -> list[str]:
    """Return the keys shared by all ``states`` (in the first one's order), or raise on any mismatch.

    Merging only makes sense between models of one architecture (D2), so a missing key or a shape or
    dtype difference is a caller error that must not be papered over.
    """
    if not states:
        raise ValueError("merge needs at least one state dict")
    first = states[0]
    keys = list(first)
    for index, other in enumerate(states[1:], start=1):
        if set(other) != set(keys):
            diff = sorted(set(other) ^ set(keys))[:5]
            raise ValueError(f"state dict {index} has different keys from state dict 0: {diff}")
        for key in keys:
            a, b = first[key], other[key]
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(
                    f"{key}: state dict {index} has {tuple(b.shape)} {b.dtype}, "
                    f"state dict 0 has {tuple(a.shape)} {a.dtype}"
                )
    return keys


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; every other float type is merged in float32 to avoid bf16/fp16 rounding."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def passthrough(key: str, tensors: Sequence[Tensor]) -> Tensor:
    """Non-float tensors (counters, masks, ids) cannot be averaged: they must agree, and are copied."""
    first = tensors[0]
    for other in tensors[1:]:
        if not torch.equal(first, other):
            raise ValueError(f"{key}: non-float tensor differs between inputs and cannot be merged")
    return first.clone()


def validate_generator(generator: torch.Generator | None, what: str) -> torch.Generator:
    """Randomness always comes from an explicit generator (interfaces.md), so a missing one is an error."""
    if generator is None:
        raise ValueError(f"{what} is random: pass a seeded torch.Generator")
    return generator
