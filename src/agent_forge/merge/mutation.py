"""Gaussian mutation for Phase 2's elite children (spec 2.2.5)."""

from __future__ import annotations

import torch
from torch import Tensor

from agent_forge.merge.state import StateDict, StateLike, compute_dtype, validate_generator


def mutate(
    state: StateLike, sigma: float = 0.01, rate: float = 0.01, generator: torch.Generator | None = None
) -> StateDict:
    """Add N(0, sigma^2) noise to a random ``rate`` share of the elements of every float tensor.

    Noise is drawn only for the selected elements, so a 1% mutation costs one uniform draw per element
    plus 1% Gaussian draws, made on the generator's device so a seed gives the same mutation for tensors
    on any device. Non-float tensors are copied unchanged.
    """
    if sigma < 0 or not 0.0 <= rate <= 1.0:
        raise ValueError(f"mutation needs sigma >= 0 and rate in [0, 1], got sigma={sigma}, rate={rate}")
    if sigma == 0.0 or rate == 0.0:
        return {key: tensor.clone() for key, tensor in state.items()}
    rng = validate_generator(generator, "mutation")
    return {key: _mutate_tensor(tensor, sigma, rate, rng) for key, tensor in state.items()}


def _mutate_tensor(tensor: Tensor, sigma: float, rate: float, generator: torch.Generator) -> Tensor:
    mutated = tensor.clone(memory_format=torch.contiguous_format)
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return mutated
    flat = mutated.view(-1)
    chosen = torch.rand(flat.shape, generator=generator, device=generator.device) < rate
    positions = chosen.nonzero().squeeze(1).to(flat.device)
    dtype = compute_dtype(tensor.dtype)
    noise = torch.randn(positions.numel(), generator=generator, device=generator.device, dtype=dtype)
    noise = noise.to(flat.device)
    flat[positions] = (flat[positions].to(dtype) + noise * sigma).to(tensor.dtype)
    return mutated
