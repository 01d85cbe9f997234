"""DARE and TIES: the papers' formulas, properties, and parity with mergekit's sparsifiers and TIES."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from mergekit.merge_methods import merge_tensors
from mergekit.sparsify import SparsificationMethod, sparsify

from agent_forge.merge import dare, ties
from agent_forge.merge.task_arithmetic import trim_to_top_magnitude

SHAPES = {"emb.weight": (11, 6), "layers.0.w": (6, 6), "layers.0.b": (6,)}


def random_state(seed: int, dtype: torch.dtype = torch.float32) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen).to(dtype) for k, s in SHAPES.items()}


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_dare_with_p_zero_is_the_identity(seed: int) -> None:
    merged, base = random_state(seed), random_state(seed + 1)
    result = dare(merged, base, 0.0, None)
    assert all(torch.equal(result[k], merged[k]) for k in SHAPES)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), p=st.floats(0.05, 0.95))
def test_dare_keeps_or_drops_each_element_with_the_paper_rescale(seed: int, p: float) -> None:
    merged, base = random_state(seed), random_state(seed + 1)
    result = dare(merged, base, p, seeded(seed))
    for key in SHAPES:
        delta, kept = merged[key] - base[key], result[key] - base[key]
        dropped = result[key] == base[key]
        torch.testing.assert_close(kept[~dropped], delta[~dropped] / (1 - p), rtol=1e-5, atol=1e-5)


def test_dare_preserves_the_delta_in_expectation_and_drops_share_p() -> None:
    p, rows = 0.9, 20_000
    delta = torch.linspace(-2.0, 3.0, 8)
    base = {"w": torch.full((rows, 8), 0.5)}
    merged = {"w": base["w"] + delta}
    result = dare(merged, base, p, seeded(3))["w"] - base["w"]
    kept_share = (result != 0).float().mean().item()
    assert abs(kept_share - (1 - p)) < 4 * (p * (1 - p) / result.numel()) ** 0.5
    sigma = delta.abs() * (p / (1 - p)) ** 0.5 / rows**0.5  # std of the column mean
    assert torch.all((result.mean(dim=0) - delta).abs() <= 5 * sigma + 1e-6)


def test_dare_is_deterministic_given_the_generator_and_needs_one() -> None:
    merged, base = random_state(0), random_state(1)
    first, second = dare(merged, base, 0.5, seeded(9)), dare(merged, base, 0.5, seeded(9))
    other = dare(merged, base, 0.5, seeded(10))
    assert all(torch.equal(first[k], second[k]) for k in SHAPES)
    assert not all(torch.equal(first[k], other[k]) for k in SHAPES)
    with pytest.raises(ValueError, match="Generator"):
        dare(merged, base, 0.5, None)
    with pytest.raises(ValueError):
        dare(merged, base, 1.0, seeded(0))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_dare_and_ties_keep_keys_shapes_dtypes(dtype: torch.dtype) -> None:
    merged, base = random_state(0, dtype), random_state(1, dtype)
    for result in (dare(merged, base, 0.5, seeded(0)), ties(merged, base, 0.3)):
        assert list(result) == list(SHAPES)
        assert all(result[k].shape == SHAPES[k] and result[k].dtype == dtype for k in SHAPES)


def test_dare_mask_matches_mergekit_random_sparsifier_on_the_same_seed() -> None:
    """Same seed, same mask; the rescale is the paper's 1/(1-p), not mergekit's L1 norm matching."""
    merged, base, p, seed = random_state(4), random_state(5), 0.7, 1234
    ours = dare(merged, base, p, seeded(seed))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        theirs = {
            k: sparsify(merged[k] - base[k], density=1 - p, method=SparsificationMethod.random)
            for k in SHAPES
        }
    for key in SHAPES:
        torch.testing.assert_close(ours[key], base[key] + theirs[key] / (1 - p), rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 4), k=st.floats(0.05, 1.0))
def test_ties_with_agreeing_deltas_is_the_mean_of_kept_entries(seed: int, count: int, k: float) -> None:
    gen = seeded(seed)
    base = {"w": torch.randn(40, generator=gen)}
    deltas = [torch.rand(40, generator=gen) + 0.01 for _ in range(count)]  # all positive: all agree
    result = ties([{"w": base["w"] + d} for d in deltas], base, k)["w"]
    keep = max(1, int(k * 40))
    kept = torch.stack([torch.where(d >= d.topk(keep).values[-1], d, 0.0) for d in deltas])
    expected = kept.sum(0) / (kept != 0).sum(0).clamp(min=1)
    torch.testing.assert_close(result, base["w"] + expected, rtol=1e-5, atol=1e-5)


def test_ties_elects_the_sign_of_the_sum_and_averages_only_agreeing_deltas() -> None:
    base = {"w": torch.zeros(4)}
    models = [
        {"w": torch.tensor([3.0, -1.0, 2.0, 1.0])},
        {"w": torch.tensor([-1.0, -1.0, -4.0, -1.0])},
        {"w": torch.tensor([1.0, 5.0, 0.0, 0.0])},
    ]
    # sums 3, 3, -2, 0 -> signs +, +, -, none; agreeing means 2, 5, -4, 0
    torch.testing.assert_close(ties(models, base, 1.0)["w"], torch.tensor([2.0, 5.0, -4.0, 0.0]))


def test_ties_on_identical_models_returns_the_model_at_full_density() -> None:
    model, base = random_state(0), random_state(1)
    result = ties([model, model, model], base, 1.0)
    for key in SHAPES:
        torch.testing.assert_close(result[key], model[key], rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("k", [0.05, 0.2, 0.5, 0.9])
def test_single_delta_ties_equals_mergekit_magnitude_trim(k: float) -> None:
    merged, base = random_state(6), random_state(7)
    result = ties(merged, base, k)
    for key in SHAPES:
        trimmed = sparsify(merged[key] - base[key], density=k, method=SparsificationMethod.magnitude)
        torch.testing.assert_close(result[key], base[key] + trimmed, rtol=0, atol=0)


@pytest.mark.parametrize("k", [0.1, 0.3, 0.7, 1.0])
@pytest.mark.parametrize("count", [2, 3, 5])
def test_ties_matches_mergekit_ties_with_unit_weights(k: float, count: int) -> None:
    models, base = [random_state(10 + i) for i in range(count)], random_state(99)
    result = ties(models, base, k)
    for key in SHAPES:
        tensors = [base[key]] + [m[key] for m in models]
        parameters = {"density": k, "weight": 1.0}
        expected = merge_tensors(tensors, "ties", parameters=parameters, base_index=0)
        torch.testing.assert_close(result[key], expected, rtol=1e-6, atol=1e-6)


def test_ties_rejects_bad_density_and_scales_the_delta() -> None:
    merged, base = random_state(0), random_state(1)
    with pytest.raises(ValueError):
        ties(merged, base, 0.0)
    half = ties(merged, base, 0.5, scale=0.5)
    full = ties(merged, base, 0.5)
    torch.testing.assert_close(
        half["layers.0.w"] - base["layers.0.w"], (full["layers.0.w"] - base["layers.0.w"]) / 2
    )


def test_non_float_tensors_pass_through_dare_ties_and_slerp() -> None:
    from agent_forge.merge import slerp

    merged = {"w": torch.randn(5), "ids": torch.arange(3)}
    base = {"w": torch.randn(5), "ids": torch.arange(3)}
    for result in (dare(merged, base, 0.5, seeded(0)), ties(merged, base, 0.5), slerp(merged, base, 0.5)):
        assert torch.equal(result["ids"], torch.arange(3))
    with pytest.raises(ValueError, match="ids"):
        ties(merged, {**base, "ids": torch.arange(3) + 1}, 0.5)


def _bf16_models(count: int, shape: tuple[int, ...] = (64, 48)) -> tuple[list[dict], dict]:
    """bf16 models near a bf16 base: their deltas take few distinct values, so magnitudes tie often."""
    gen = torch.Generator().manual_seed(3)
    base = torch.randn(shape, generator=gen).to(torch.bfloat16)
    models = [(base.float() + 0.01 * torch.randn(shape, generator=gen)).to(torch.bfloat16) for _ in range(count)]
    return [{"w": m} for m in models], {"w": base}


@pytest.mark.parametrize("k", [0.05, 0.2, 0.5])
def test_ties_keeps_exactly_k_values_per_tensor_on_bf16_ties(k: float) -> None:
    """Issue 25 F8: every magnitude tied with the threshold used to be kept (5.7% more than k on bf16)."""
    (model,), base = _bf16_models(1)
    delta = (model["w"].float() - base["w"].float()).reshape(-1)
    keep = int(k * delta.numel())
    threshold = delta.abs().sort(descending=True).values[keep - 1]
    assert (delta.abs() == threshold).sum() > 1  # the case: ties straddle the cut
    result = ties(model, base, k)["w"]
    kept = (result.float() != base["w"].float()).reshape(-1)
    assert result.dtype == torch.bfloat16 and int(kept.sum()) == keep
    # ties are broken by index: the lowest indices among the tied magnitudes are kept, as a stable sort does
    expected = torch.zeros_like(kept)
    expected[torch.argsort(delta.abs(), descending=True, stable=True)[:keep]] = True
    assert torch.equal(kept, expected)
    assert torch.equal(ties(model, base, k)["w"], result)  # deterministic


@pytest.mark.parametrize("k", [0.2, 0.5])
@pytest.mark.parametrize("count", [1, 3])
def test_ties_matches_mergekit_on_bf16_inputs_except_where_ties_are_broken(k: float, count: int) -> None:
    models, base = _bf16_models(count)
    result = ties(models, base, k)["w"]
    tensors = [base["w"], *(m["w"] for m in models)]
    parameters = {"density": k, "weight": 1.0}
    expected = merge_tensors(tensors, "ties", parameters=parameters, base_index=0, dtype=torch.float32,
                             out_dtype=torch.bfloat16)  # fmt: skip
    assert expected.dtype == result.dtype == torch.bfloat16
    deltas = torch.stack([(m["w"].float() - base["w"].float()).abs().reshape(-1) for m in models])
    thresholds = deltas.sort(dim=1, descending=True).values[:, int(k * deltas.shape[1]) - 1 : int(k * deltas.shape[1])]
    signed = torch.stack([(m["w"].float() - base["w"].float()).reshape(-1) for m in models])
    elected_sum = trim_to_top_magnitude(signed, k).sum(dim=0)
    # mergekit's argsort orders tied magnitudes arbitrarily, and it elects + where the trimmed deltas sum to
    # exactly 0 (we follow the paper: no update); everywhere else the two agree exactly
    differs_by_design = (deltas == thresholds).any(dim=0) | ((elected_sum == 0) & (signed != 0).any(dim=0))
    same = ~differs_by_design.reshape(result.shape)
    torch.testing.assert_close(result[same], expected[same], rtol=0, atol=0)
    assert same.float().mean() > 0.5
