"""Newton-Schulz: singular values land in the quintic's band, shapes and inputs are handled as stated."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.optim.newton_schulz import match_rms_adamw_scale, orthogonalize

BAND = (0.6, 1.3)


def _matrix_with_spectrum(rows: int, cols: int, spectrum: torch.Tensor, seed: int) -> torch.Tensor:
    """A random ``rows x cols`` matrix whose singular values are exactly ``spectrum``."""
    generator = torch.Generator().manual_seed(seed)
    rank = min(rows, cols)
    left, _ = torch.linalg.qr(torch.randn(rows, rank, generator=generator, dtype=torch.float64))
    right, _ = torch.linalg.qr(torch.randn(cols, rank, generator=generator, dtype=torch.float64))
    return (left * spectrum) @ right.T


def _singular_values(matrix: torch.Tensor) -> torch.Tensor:
    return torch.linalg.svdvals(matrix.double())


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(2, 96),
    cols=st.integers(2, 96),
    dynamic_range=st.floats(1.0, 10.0),
    seed=st.integers(0, 2**16),
)
def test_every_singular_value_lands_in_band(rows: int, cols: int, dynamic_range: float, seed: int) -> None:
    """Singular values within 10x of each other (so none is below ~1% of the Frobenius norm for rank <= 96)
    all end in the band after five bf16 steps, whatever the shape or the overall scale."""
    rank = min(rows, cols)
    spectrum = torch.linspace(1.0, 1.0 / dynamic_range, rank, dtype=torch.float64) * 37.0
    matrix = _matrix_with_spectrum(rows, cols, spectrum, seed).float()
    values = _singular_values(orthogonalize(matrix, steps=5))
    assert values.min() >= BAND[0] and values.max() <= BAND[1], values


@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (64, 200), (200, 64), (8, 300), (40, 100)])
def test_random_gaussian_rectangles_land_in_band(shape: tuple[int, int]) -> None:
    generator = torch.Generator().manual_seed(sum(shape))
    matrix = torch.randn(*shape, generator=generator)
    values = _singular_values(orthogonalize(matrix, steps=5))
    assert BAND[0] <= values.min() and values.max() <= BAND[1], values


def test_square_gaussian_bulk_lands_in_band() -> None:
    """Square random matrices have singular values near 0 that no fixed step count lifts; the bulk still
    must land (the 5th percentile and up)."""
    matrix = torch.randn(128, 128, generator=torch.Generator().manual_seed(3))
    values = _singular_values(orthogonalize(matrix, steps=5))
    assert values.quantile(0.05) >= BAND[0] and values.max() <= BAND[1]


def test_without_normalisation_the_iteration_would_diverge() -> None:
    """Guards the Frobenius normalisation: the same polynomial on the raw matrix blows up."""
    matrix = torch.randn(16, 32, generator=torch.Generator().manual_seed(0)) * 10
    a, b, c = 3.4445, -4.7750, 2.0315
    raw = matrix.double()
    for _ in range(5):
        gram = raw @ raw.T
        raw = a * raw + (b * gram + c * gram @ gram) @ raw
    assert not torch.isfinite(raw).all() or _singular_values(raw).max() > 1e6
    assert _singular_values(orthogonalize(matrix, steps=5)).max() <= BAND[1]


def test_tall_matrix_is_the_transpose_of_its_wide_twin() -> None:
    wide = torch.randn(24, 80, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(orthogonalize(wide.T.contiguous(), 5), orthogonalize(wide, 5).T)


def test_output_shape_dtype_and_input_untouched() -> None:
    matrix = torch.randn(40, 12, generator=torch.Generator().manual_seed(2)).bfloat16()
    before = matrix.clone()
    out = orthogonalize(matrix, 3)
    assert out.shape == (40, 12) and out.dtype == torch.bfloat16
    assert torch.equal(matrix, before)
    assert orthogonalize(matrix.float(), 3, dtype=torch.float32).dtype == torch.float32


def test_float64_converges_closer_than_bf16_stays_in_band() -> None:
    matrix = torch.randn(32, 64, generator=torch.Generator().manual_seed(4))
    precise = _singular_values(orthogonalize(matrix, 5, dtype=torch.float64))
    assert BAND[0] <= precise.min() and precise.max() <= BAND[1]


def test_zero_matrix_gives_zero_update() -> None:
    assert torch.equal(orthogonalize(torch.zeros(6, 9), 5).float(), torch.zeros(6, 9))


def test_rejects_non_matrices() -> None:
    with pytest.raises(ValueError, match="2-D"):
        orthogonalize(torch.ones(2, 3, 4, 5), 5)
    with pytest.raises(ValueError, match="2-D"):
        orthogonalize(torch.ones(5), 5)


@pytest.mark.parametrize("shape", [(12, 20), (20, 12)])
def test_stack_equals_each_matrix_alone(shape: tuple[int, int]) -> None:
    """A stack is orthogonalised matrix by matrix: each slice equals that matrix's own result, and a
    matrix of ten times the scale gives the same (each is normalised by its own norm)."""
    generator = torch.Generator().manual_seed(3)
    stack = torch.randn(3, *shape, generator=generator, dtype=torch.float64)
    stack[1] *= 10.0
    together = orthogonalize(stack, 5, dtype=torch.float64)
    for index in range(3):
        torch.testing.assert_close(together[index], orthogonalize(stack[index], 5, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(64, 64), (32, 512), (512, 32)])
def test_scale_makes_update_rms_point_two(shape: tuple[int, int]) -> None:
    """An exactly orthogonal update times the scale has RMS 0.2 for every shape (AdamW's typical RMS)."""
    orthogonal = _matrix_with_spectrum(*shape, torch.ones(min(shape), dtype=torch.float64), seed=5)
    rms = (orthogonal * match_rms_adamw_scale(shape)).pow(2).mean().sqrt().item()
    assert math.isclose(rms, 0.2, rel_tol=1e-9)
