"""Gaussian mutation of a share of the parameters (spec 2.2.5)."""

from __future__ import annotations

import pytest
import torch

from agent_forge.merge import mutate


def big_state() -> dict:
    gen = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(400, 500, generator=gen),
        "b": torch.randn(500, generator=gen),
        "n": torch.tensor([7]),
    }


def test_mutation_touches_the_rate_share_with_sigma_noise() -> None:
    state, rate, sigma = big_state(), 0.05, 0.3
    mutated = mutate(state, sigma, rate, torch.Generator().manual_seed(1))
    noise = mutated["w"] - state["w"]
    changed = noise != 0
    count = state["w"].numel()
    assert abs(changed.float().mean().item() - rate) < 4 * (rate * (1 - rate) / count) ** 0.5
    assert noise[changed].mean().abs().item() < 0.02
    assert noise[changed].std().item() == pytest.approx(sigma, rel=0.05)
    assert torch.equal(mutated["n"], state["n"])


def test_mutation_is_deterministic_and_leaves_the_input_alone() -> None:
    state = big_state()
    before = {k: v.clone() for k, v in state.items()}
    first = mutate(state, 0.01, 0.01, torch.Generator().manual_seed(3))
    second = mutate(state, 0.01, 0.01, torch.Generator().manual_seed(3))
    other = mutate(state, 0.01, 0.01, torch.Generator().manual_seed(4))
    assert all(torch.equal(first[k], second[k]) for k in state)
    assert not torch.equal(first["w"], other["w"])
    assert all(torch.equal(state[k], before[k]) for k in state)


def test_zero_rate_or_sigma_is_the_identity_and_bad_values_raise() -> None:
    state = big_state()
    for mutated in (mutate(state, 0.0, 0.5), mutate(state, 0.5, 0.0)):
        assert all(torch.equal(mutated[k], state[k]) for k in state)
    with pytest.raises(ValueError):
        mutate(state, -1.0, 0.1, torch.Generator())
    with pytest.raises(ValueError, match="Generator"):
        mutate(state, 0.1, 0.1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_mutation_keeps_shape_dtype_and_handles_non_contiguous_tensors(dtype: torch.dtype) -> None:
    state = {"w": torch.randn(30, 20).to(dtype).t()}
    mutated = mutate(state, 0.1, 0.5, torch.Generator().manual_seed(0))
    assert mutated["w"].shape == (20, 30) and mutated["w"].dtype == dtype
    assert (mutated["w"] != state["w"]).any()
