"""Uniform scalar quantization around a row codebook: steps, error bounds, importance, exact stream round trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent_forge.quant.uniform import (
    UniformConfig,
    UniformEncoded,
    row_exponents,
    row_steps,
    uniform_decode,
    uniform_encode,
)

GEN = torch.Generator().manual_seed(0)
WEIGHT = 0.2 * torch.randn(200, 24, generator=GEN)


def test_exponents_follow_the_inverse_square_root_rule_and_are_capped() -> None:
    importance = torch.tensor([4.0, 1.0, 0.25, 0.0625, 0.0, 2.0])  # mean 1.2187...
    exponents = row_exponents(importance * (1 / importance.mean()), 6, max_exponent=4)
    assert exponents.tolist() == [0, 0, 2, 4, 4, 0]
    assert row_exponents(None, 3, 4).tolist() == [0, 0, 0]
    steps = row_steps(0.5, torch.tensor([0, 2, 4]))
    assert steps.tolist() == pytest.approx([0.5, 1.0, 2.0])  # step ~ importance ** -0.5
    with pytest.raises(ValueError, match="one per row"):
        row_exponents(torch.ones(5), 6, 4)
    with pytest.raises(ValueError, match="non-negative"):
        row_exponents(torch.tensor([1.0, -1.0]), 2, 4)


def test_every_weight_is_within_half_a_step_of_its_reconstruction() -> None:
    encoded = uniform_encode(WEIGHT, UniformConfig(step=0.3, clusters=4))
    steps = row_steps(encoded.base, encoded.exponents).unsqueeze(1)
    error = (uniform_decode(encoded) - WEIGHT).abs()
    assert bool((error <= steps / 2 + 1e-6).all())
    differences = WEIGHT - encoded.centroids.float()[encoded.assignment]
    assert encoded.base == pytest.approx(0.3 * float(differences.pow(2).mean().sqrt()), rel=1e-5)


def test_a_finer_step_costs_more_symbols_and_less_error() -> None:
    errors, spreads = [], []
    for step in (0.1, 0.3, 1.0):
        encoded = uniform_encode(WEIGHT, UniformConfig(step=step, clusters=1))
        errors.append(float((uniform_decode(encoded) - WEIGHT).pow(2).mean()))
        spreads.append(len(torch.unique(encoded.values)))
    assert errors == sorted(errors) and spreads == sorted(spreads, reverse=True)


def test_rows_at_their_centroid_cost_nothing_and_rare_rows_get_coarser_steps() -> None:
    shared = torch.randn(24, generator=GEN)
    weight = torch.cat([WEIGHT[:100], shared.expand(100, -1)])  # 100 rows that all drifted the same way
    importance = torch.cat([torch.ones(100), torch.full((100,), 0.01)])
    encoded = uniform_encode(weight, UniformConfig(step=0.3, clusters=2, max_exponent=6), importance)
    assert bool((encoded.values[100:] == 0).all())
    assert set(encoded.exponents[:100].tolist()) == {0} and set(encoded.exponents[100:].tolist()) == {6}
    assert torch.allclose(uniform_decode(encoded)[100:], shared.half().float().expand(100, -1))


def test_streams_rebuild_the_same_tensor_bit_for_bit() -> None:
    encoded = uniform_encode(WEIGHT.reshape(200, 4, 6), UniformConfig(step=0.2, clusters=3),
                             torch.rand(200, generator=GEN))
    streams = {name: np.asarray(values) for name, (values, _) in encoded.symbol_streams().items()}
    widths = {name: width for name, (_, width) in encoded.symbol_streams().items()}
    assert widths["centroids"] == 16 and widths["assignment"] == 2 and widths["exponents"] == 3
    assert all(int(values.max()) < 1 << widths[name] for name, values in streams.items())
    rebuilt = UniformEncoded.from_streams(encoded.shape, encoded.params(), streams)
    assert torch.equal(uniform_decode(rebuilt), uniform_decode(encoded))
    assert uniform_decode(rebuilt).shape == (200, 4, 6)


def test_bad_settings_are_refused() -> None:
    for bad in ({"step": 0.0}, {"clusters": 0}, {"max_exponent": 16}, {"iterations": -1}):
        with pytest.raises(ValueError):
            UniformConfig(**bad)
