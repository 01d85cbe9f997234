"""SeedLM: the LFSR against its definition, exact seed search against brute force, reconstruction quality."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agent_forge.quant.entropy import pack_uint, unpack_uint
from agent_forge.quant.seedlm import (
    MAXIMAL_TAPS,
    SeedLMConfig,
    SeedLMEncoded,
    lfsr_orbit,
    lfsr_sequence,
    seed_basis_table,
    seedlm_decode,
    seedlm_encode,
)


def reference_lfsr(seed: int, taps: tuple[int, ...], n: int) -> list[int]:
    """Fibonacci LFSR by definition: emit the state, XOR the tapped bits, shift right, feed back on top."""
    width = max(taps)
    state, out = seed, []
    for _ in range(n):
        out.append(state)
        feedback = 0
        for tap in taps:
            feedback ^= (state >> (width - tap)) & 1
        state = (state >> 1) | (feedback << (width - 1))
    return out


def reference_period(seed: int, taps: tuple[int, ...]) -> int:
    width, state, steps = max(taps), seed, 0
    while True:
        feedback = 0
        for tap in taps:
            feedback ^= (state >> (width - tap)) & 1
        state = (state >> 1) | (feedback << (width - 1))
        steps += 1
        if state == seed:
            return steps


@pytest.mark.parametrize("width", [4, 5, 8, 12, 16])
def test_lfsr_sequence_matches_its_definition(width: int) -> None:
    taps = MAXIMAL_TAPS[width]
    for seed in (1, 2, (1 << width) - 1, (1 << (width - 1)) + 3):
        assert lfsr_sequence(seed, taps, 300).tolist() == reference_lfsr(seed, taps, 300)


def test_lfsr_follows_the_published_sixteen_bit_example() -> None:
    """Wikipedia's Fibonacci example: taps 16,14,13,11 from 0xACE1; next state 0x5670, period 65535."""
    taps = (16, 14, 13, 11)
    assert lfsr_sequence(0xACE1, taps, 2).tolist() == [0xACE1, 0x5670]
    assert lfsr_orbit(taps).size == 65535


@pytest.mark.parametrize("width", [w for w in MAXIMAL_TAPS if w <= 16])
def test_taps_are_maximal_length(width: int) -> None:
    taps = MAXIMAL_TAPS[width]
    assert reference_period(1, taps) == (1 << width) - 1
    orbit = lfsr_orbit(taps)
    assert sorted(orbit.tolist()) == list(range(1, 1 << width))


@pytest.mark.slow
@pytest.mark.parametrize("width", [w for w in MAXIMAL_TAPS if w > 16])
def test_wide_taps_are_maximal_length(width: int) -> None:
    orbit = lfsr_orbit(MAXIMAL_TAPS[width])
    assert orbit.size == (1 << width) - 1
    assert np.unique(orbit).size == orbit.size


@pytest.mark.parametrize(("bits", "block", "coeffs"), [(6, 4, 2), (10, 8, 4)])
def test_basis_of_a_seed_is_its_lfsr_states_row_major(bits: int, block: int, coeffs: int) -> None:
    table = seed_basis_table(bits, block, coeffs)
    half = float(1 << (bits - 1))
    for seed in (1, 5, (1 << bits) - 1):
        states = lfsr_sequence(seed, MAXIMAL_TAPS[bits], block * coeffs).astype(np.float64)
        expected = torch.from_numpy((states - half) / half).float().reshape(block, coeffs)
        assert torch.equal(table.bases[seed - 1], expected)
        assert float(table.bases[seed - 1].abs().max()) < 1.0


def test_lfsr_rejects_seeds_off_the_register() -> None:
    with pytest.raises(ValueError):
        lfsr_sequence(0, MAXIMAL_TAPS[8], 4)
    with pytest.raises(ValueError):
        lfsr_sequence(256, MAXIMAL_TAPS[8], 4)


def brute_force_errors(block: np.ndarray, cfg: SeedLMConfig, exponent_high: int) -> np.ndarray:
    """Quantized reconstruction error of ``block`` under every seed, from the paper's recipe, in float64."""
    half = float(1 << (cfg.lfsr_bits - 1))
    qmax = (1 << (cfg.coeff_bits - 1)) - 1
    low = exponent_high - (1 << cfg.exponent_bits) + 1
    errors = []
    for seed in range(1, 1 << cfg.lfsr_bits):
        states = lfsr_sequence(seed, cfg.taps, cfg.block * cfg.coeffs).astype(np.float64)
        basis = ((states - half) / half).reshape(cfg.block, cfg.coeffs)
        t = np.linalg.pinv(basis) @ block
        exponent = np.clip(np.ceil(np.log2(max(np.abs(t).max(), 1e-30) / qmax)), low, exponent_high)
        q = np.clip(np.round(t / 2.0**exponent), -qmax - 1, qmax)
        errors.append(float(((block - basis @ (q * 2.0**exponent)) ** 2).sum()))
    return np.array(errors)


@pytest.mark.parametrize("shortlist", [1, 4, 63])
def test_chosen_seed_is_the_argmin_over_all_seeds(shortlist: int) -> None:
    cfg = SeedLMConfig(block=4, coeffs=2, lfsr_bits=6, shortlist=shortlist, chunk_blocks=16)
    weight = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    encoded = seedlm_encode(weight, cfg)
    chosen = ((seedlm_decode(encoded) - weight) ** 2).sum(dim=1).double().numpy()
    for row, block in enumerate(weight.double().numpy()):
        errors = brute_force_errors(block, cfg, encoded.exponent_high)
        tolerance = 1e-5 * float((block**2).sum())
        assert chosen[row] <= errors.min() + tolerance
        assert errors[int(encoded.seeds[row]) - 1] <= errors.min() + tolerance


def test_quantization_changes_the_winner_so_the_widened_search_matters() -> None:
    """For some blocks the least-squares favourite is not the best after quantization; shortlist=1 must
    still find the true argmin there (checked above), so this guards the test's own power."""
    cfg = SeedLMConfig(block=4, coeffs=2, lfsr_bits=6)
    weight = torch.randn(40, 4, generator=torch.Generator().manual_seed(3))
    encoded = seedlm_encode(weight, cfg)
    changed = 0
    for block in weight.double().numpy():
        residuals = []
        for seed in range(1, 64):
            states = lfsr_sequence(seed, cfg.taps, 8).astype(np.float64)
            basis = ((states - 32.0) / 32.0).reshape(4, 2)
            fit = basis @ np.linalg.lstsq(basis, block, rcond=None)[0]
            residuals.append(((block - fit) ** 2).sum())
        errors = brute_force_errors(block, cfg, encoded.exponent_high)
        changed += int(errors[int(np.argmin(residuals))] > errors.min() + 1e-9)
    assert changed > 0


def test_reconstruction_error_is_far_below_the_variance() -> None:
    weight = 0.02 * torch.randn(16, 128, generator=torch.Generator().manual_seed(0))
    encoded = seedlm_encode(weight, SeedLMConfig())
    relative = float(((seedlm_decode(encoded) - weight) ** 2).mean() / weight.var())
    assert relative < 0.02
    assert encoded.seeds.min() >= 1 and encoded.seeds.max() < 1 << 16


def test_more_coefficients_or_wider_registers_fit_better() -> None:
    weight = torch.randn(16, 96, generator=torch.Generator().manual_seed(1))

    def error(cfg: SeedLMConfig) -> float:
        return float(((seedlm_decode(seedlm_encode(weight, cfg)) - weight) ** 2).mean())

    assert error(SeedLMConfig(coeffs=4, lfsr_bits=10)) < error(SeedLMConfig(coeffs=2, lfsr_bits=10))
    assert error(SeedLMConfig(coeffs=3, lfsr_bits=12)) < error(SeedLMConfig(coeffs=3, lfsr_bits=6))


def test_scaling_by_a_power_of_two_scales_the_reconstruction_exactly() -> None:
    weight = torch.randn(8, 40, generator=torch.Generator().manual_seed(2))
    cfg = SeedLMConfig(lfsr_bits=8)
    base = seedlm_decode(seedlm_encode(weight, cfg))
    assert torch.equal(seedlm_decode(seedlm_encode(weight * 8.0, cfg)), base * 8.0)


@pytest.mark.parametrize("shape", [(5, 7), (3,), (0, 4), (2, 3, 4)])
def test_odd_shapes_pad_and_come_back(shape: tuple[int, ...]) -> None:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(4))
    decoded = seedlm_decode(seedlm_encode(weight, SeedLMConfig(lfsr_bits=8)))
    assert decoded.shape == weight.shape
    if weight.numel():
        assert float(((decoded - weight) ** 2).mean()) < float(weight.var())


def test_zero_tensor_decodes_to_zeros() -> None:
    weight = torch.zeros(4, 16)
    assert torch.equal(seedlm_decode(seedlm_encode(weight, SeedLMConfig(lfsr_bits=8))), weight)


def test_streams_round_trip_through_bit_packing() -> None:
    weight = torch.randn(6, 50, generator=torch.Generator().manual_seed(5))
    encoded = seedlm_encode(weight, SeedLMConfig(lfsr_bits=10, coeff_bits=3))
    unpacked = {
        name: unpack_uint(pack_uint(values, width), width, values.size)
        for name, (values, width) in encoded.symbol_streams().items()
    }
    rebuilt = SeedLMEncoded.from_streams(weight.shape, encoded.params(), unpacked)
    assert torch.equal(seedlm_decode(rebuilt), seedlm_decode(encoded))
    bits = sum(width * values.size for values, width in encoded.symbol_streams().values())
    assert bits == encoded.payload_bits


def test_bits_per_weight_counts_seed_exponent_and_coefficients() -> None:
    assert SeedLMConfig().bits_per_weight == (16 + 4 + 4 * 4) / 8
    assert SeedLMConfig(block=12, coeffs=4, coeff_bits=4).bits_per_weight == 3.0


def test_config_rejects_impossible_shapes() -> None:
    with pytest.raises(ValueError):
        SeedLMConfig(lfsr_bits=21)
    with pytest.raises(ValueError):
        SeedLMConfig(block=4, coeffs=5)
    with pytest.raises(ValueError):
        SeedLMConfig(coeff_bits=1)
