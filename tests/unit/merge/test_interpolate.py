"""Linear, SLERP and chained SLERP: properties, edge cases and parity with mergekit's slerp."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.merge import linear, slerp, slerp_chain, slerp_tensor
from agent_forge.merge.interpolate import slerp_coefficients

SHAPES = {"emb.weight": (7, 5), "layers.0.w": (5, 5), "layers.0.b": (5,), "norm.weight": (5,)}


def random_state(seed: int, dtype: torch.dtype = torch.float32, shapes: dict | None = None) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen).to(dtype) for k, s in (shapes or SHAPES).items()}


def near_copies(seed: int, count: int, spread: float = 1e-3) -> list[dict]:
    """Models that differ from one centre by tiny noise: every pair is near-parallel (|cos| > 0.9995)."""
    centre = random_state(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    return [
        {k: v + spread * torch.randn(v.shape, generator=gen) for k, v in centre.items()} for _ in range(count)
    ]


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 4))
def test_linear_of_identical_models_is_that_model(seed: int, count: int) -> None:
    state = random_state(seed)
    merged = linear([state] * count)
    for key, tensor in state.items():
        torch.testing.assert_close(merged[key], tensor, rtol=1e-6, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(raw=st.lists(st.floats(0.01, 10.0), min_size=2, max_size=5), value=st.floats(-100, 100))
def test_linear_weights_summing_to_one_keep_a_constant(raw: list[float], value: float) -> None:
    weights = [w / sum(raw) for w in raw]
    models = [{"w": torch.full((4, 3), value)} for _ in weights]
    merged = linear(models, weights)
    torch.testing.assert_close(merged["w"], torch.full((4, 3), value), rtol=1e-5, atol=1e-5)


def test_linear_is_the_weighted_average_and_normalises_weights() -> None:
    a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    torch.testing.assert_close(linear([a, b], [1.0, 3.0])["w"], torch.tensor([2.5, 5.0]))
    torch.testing.assert_close(linear([a, b], [2.0, 6.0])["w"], torch.tensor([2.5, 5.0]))
    torch.testing.assert_close(linear([a, b])["w"], torch.tensor([2.0, 4.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_outputs_keep_keys_shapes_and_dtypes(dtype: torch.dtype) -> None:
    models = [random_state(s, dtype) for s in range(3)]
    for merged in (linear(models), slerp(models[0], models[1], 0.3), slerp_chain(models)):
        assert list(merged) == list(SHAPES)
        for key, shape in SHAPES.items():
            assert merged[key].shape == shape and merged[key].dtype == dtype


def test_mismatched_models_are_rejected() -> None:
    a = random_state(0)
    with pytest.raises(ValueError, match="different keys"):
        linear([a, {**a, "extra": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"emb\.weight"):
        linear([a, {**a, "emb.weight": torch.zeros(3, 3)}])
    with pytest.raises(ValueError, match="weights"):
        linear([a, a], [1.0, -1.0])


def test_non_float_tensors_must_agree_and_are_copied() -> None:
    a = {"w": torch.ones(2), "step": torch.tensor([3])}
    merged = linear([a, {"w": torch.zeros(2), "step": torch.tensor([3])}])
    assert torch.equal(merged["step"], torch.tensor([3]))
    with pytest.raises(ValueError, match="step"):
        linear([a, {"w": torch.zeros(2), "step": torch.tensor([4])}])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_slerp_endpoints_are_the_inputs_exactly(seed: int) -> None:
    a, b = random_state(seed), random_state(seed + 1)
    for key in SHAPES:
        assert torch.equal(slerp(a, b, 0.0)[key], a[key])
        assert torch.equal(slerp(a, b, 1.0)[key], b[key])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), t=st.floats(0.0, 1.0))
def test_slerp_of_identical_models_is_that_model(seed: int, t: float) -> None:
    a = random_state(seed)
    merged = slerp(a, a, t)
    for key in SHAPES:
        torch.testing.assert_close(merged[key], a[key], rtol=1e-6, atol=1e-6)


def test_slerp_keeps_the_norm_of_orthogonal_equal_norm_vectors() -> None:
    x, y = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    mid = slerp_tensor(x, y, 0.5)
    torch.testing.assert_close(mid, torch.tensor([3 / math.sqrt(2), 3 / math.sqrt(2)]))
    assert torch.linalg.vector_norm(mid).item() == pytest.approx(3.0)
    assert torch.linalg.vector_norm(0.5 * x + 0.5 * y).item() < 2.2  # what averaging would give


def test_slerp_falls_back_to_linear_for_near_parallel_antipodal_and_zero_vectors() -> None:
    x = torch.randn(100, generator=torch.Generator().manual_seed(0))
    assert slerp_coefficients(x, x + 1e-4 * x.flip(0), 0.3)[2]
    assert slerp_coefficients(x, -x, 0.3) == (0.7, 0.3, True)
    assert slerp_coefficients(torch.zeros(100), x, 0.3) == (0.7, 0.3, True)
    assert not slerp_coefficients(x, x.flip(0), 0.3)[2]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(2, 5))
def test_slerp_chain_gives_equal_shares_in_the_linear_fallback(seed: int, count: int) -> None:
    models = near_copies(seed, count)
    for key in SHAPES:
        x, y = models[0][key].reshape(-1), models[-1][key].reshape(-1)
        assert slerp_coefficients(x, y, 0.5)[2], "test models must be near-parallel"
    chained, mean = slerp_chain(models), linear(models)
    for key in SHAPES:
        torch.testing.assert_close(chained[key], mean[key], rtol=1e-6, atol=1e-6)


def test_slerp_chain_uses_one_half_then_one_third_for_three_models() -> None:
    a, b, c = (random_state(s) for s in range(3))
    expected = slerp(slerp(a, b, 0.5), c, 1 / 3)
    chained = slerp_chain([a, b, c])
    for key in SHAPES:
        torch.testing.assert_close(chained[key], expected[key], rtol=0, atol=0)
    spec_sketch = slerp(slerp(a, b, 0.5), c, 0.5)
    assert not torch.allclose(chained["emb.weight"], spec_sketch["emb.weight"])


def test_slerp_rejects_t_outside_unit_interval_and_short_chains() -> None:
    a = random_state(0)
    with pytest.raises(ValueError):
        slerp(a, a, 1.5)
    with pytest.raises(ValueError):
        slerp_chain([a])


@pytest.mark.parametrize("case", ["random", "near_parallel", "antipodal", "obtuse"])
@pytest.mark.parametrize("t", [0.0, 0.25, 0.5, 1 / 3, 0.9, 1.0])
def test_slerp_matches_mergekit(case: str, t: float) -> None:
    from mergekit.merge_methods.slerp import slerp as mergekit_slerp

    gen = torch.Generator().manual_seed(7)
    a = torch.randn(6, 9, generator=gen)
    b = {
        "random": torch.randn(6, 9, generator=gen),
        "near_parallel": a + 1e-3 * torch.randn(6, 9, generator=gen),
        "antipodal": -a,
        "obtuse": -a + 0.8 * torch.randn(6, 9, generator=gen),
    }[case]
    # mergekit treats dim 0 as a batch of outputs; one flattened row is our per-tensor SLERP.
    expected = mergekit_slerp(torch.tensor([t]), a.reshape(1, -1), b.reshape(1, -1)).reshape(a.shape)
    torch.testing.assert_close(slerp_tensor(a, b, t), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("t", [0.25, 0.5, 0.9])
def test_slerp_matches_mergekit_merge_api_per_whole_tensor(dtype: torch.dtype, t: float) -> None:
    """Issue 25 F8 asked for per-row SLERP "like mergekit"; mergekit 0.1.5's merge API (merge_state_dicts,
    as its YAML merges use it) interpolates each tensor as one vector, as we do. Its ``slerp`` kernel reads
    dim 0 as a batch of output tensors, so calling it on one weight matrix gives per-row results."""
    from mergekit.merge_methods.api import merge_state_dicts

    shapes = {"w": (6, 9), "b": (5,), "conv": (3, 4, 5)}
    a, b = random_state(11, dtype, shapes), random_state(12, dtype, shapes)
    expected = merge_state_dicts([a, b], "slerp", parameters={"t": t}, base=0)
    ours = slerp(a, b, t)
    for key in shapes:
        assert ours[key].dtype == dtype
        tolerance = {"rtol": 1e-5, "atol": 1e-6} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
        torch.testing.assert_close(ours[key].float(), expected[key].float(), **tolerance)
        if key != "b":  # per-row SLERP is a different merge: it does not match
            rows = torch.stack([slerp_tensor(x, y, t) for x, y in zip(a[key], b[key], strict=True)])
            assert not torch.allclose(rows.float(), expected[key].float(), **tolerance)
