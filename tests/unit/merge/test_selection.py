"""FrankenMerge (layer-wise selection) and DFS (Fisher-weighted fusion) on small state dicts."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.merge import default_layer_key, dfs, frankenmerge, linear, plan_layer_sources

SHAPES = {
    "model.embed.weight": (9, 4),
    "model.layers.0.attn.q.weight": (4, 4),
    "model.layers.0.norm.weight": (4,),
    "model.layers.1.attn.q.weight": (4, 4),
    "model.layers.1.norm.weight": (4,),
    "model.layers.10.attn.q.weight": (4, 4),
    "model.norm.weight": (4,),
}


def random_state(seed: int, dtype: torch.dtype = torch.float32) -> dict:
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=gen).to(dtype) for k, s in SHAPES.items()}


def test_default_layer_key_groups_by_the_first_numeric_component() -> None:
    assert default_layer_key("model.layers.3.mlp.up.weight") == "model.layers.3."
    assert default_layer_key("model.layers.10.attn.q.weight") == "model.layers.10."
    assert default_layer_key("blocks.0.w") == "blocks.0."
    assert default_layer_key("model.embed.weight") is None
    assert default_layer_key("lm_head.weight") is None


def test_best_mode_takes_every_tensor_from_the_fittest_candidate_as_copies() -> None:
    candidates = [random_state(s) for s in range(3)]
    merged = frankenmerge(candidates, [0.2, 0.9, 0.5])
    for key in SHAPES:
        assert torch.equal(merged[key], candidates[1][key])
        assert merged[key].data_ptr() != candidates[1][key].data_ptr()


def test_weighted_mode_mixes_layers_but_keeps_whole_layers_and_non_layer_tensors_from_best() -> None:
    candidates = [random_state(s) for s in range(3)]
    plan = plan_layer_sources(
        list(SHAPES), [1.0, 1.0, 3.0], generator=torch.Generator().manual_seed(5), mode="weighted"
    )
    assert plan[None] == 2
    merged = frankenmerge(
        candidates, [1.0, 1.0, 3.0], generator=torch.Generator().manual_seed(5), mode="weighted"
    )
    for key in SHAPES:
        source = plan[default_layer_key(key)]
        assert torch.equal(merged[key], candidates[source][key])


def test_weighted_mode_is_deterministic_and_proportional_to_fitness() -> None:
    keys = [f"layers.{i}.w" for i in range(6000)]
    fitness = [1.0, 2.0, 3.0, 0.0]
    plan = plan_layer_sources(keys, fitness, generator=torch.Generator().manual_seed(1), mode="weighted")
    again = plan_layer_sources(keys, fitness, generator=torch.Generator().manual_seed(1), mode="weighted")
    assert plan == again
    counts = Counter(source for group, source in plan.items() if group is not None)
    assert counts[3] == 0
    for index, share in enumerate([1 / 6, 2 / 6, 3 / 6]):
        assert abs(counts[index] / 6000 - share) < 4 * (share * (1 - share) / 6000) ** 0.5


def test_frankenmerge_rejects_bad_fitness() -> None:
    candidates = [random_state(s) for s in range(2)]
    with pytest.raises(ValueError, match="fitness"):
        frankenmerge(candidates, [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        frankenmerge(candidates, [1.0, -1.0], generator=torch.Generator(), mode="weighted")
    with pytest.raises(ValueError, match="Generator"):
        frankenmerge(candidates, [1.0, 2.0], mode="weighted")
    with pytest.raises(ValueError, match="finite"):
        frankenmerge(candidates, [1.0, float("nan")])


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), count=st.integers(1, 4))
def test_dfs_of_identical_models_is_that_model(seed: int, count: int) -> None:
    state = random_state(seed)
    gen = torch.Generator().manual_seed(seed + 1)
    importance = [{k: torch.rand(v.shape, generator=gen) for k, v in state.items()} for _ in range(count)]
    merged = dfs([state] * count, importance)
    for key in SHAPES:
        torch.testing.assert_close(merged[key], state[key], rtol=1e-6, atol=1e-6)


def test_dfs_weights_each_element_by_normalised_importance() -> None:
    a, b = {"w": torch.tensor([0.0, 0.0, 0.0, 4.0])}, {"w": torch.tensor([4.0, 4.0, 4.0, 8.0])}
    importance = [{"w": torch.tensor([1.0, 0.0, 3.0, 0.0])}, {"w": torch.tensor([0.0, 2.0, 1.0, 0.0])}]
    # element 3 has no importance anywhere: plain mean
    torch.testing.assert_close(dfs([a, b], importance)["w"], torch.tensor([0.0, 4.0, 1.0, 6.0]))


def test_dfs_averages_keys_without_importance_and_rejects_partial_or_negative_scores() -> None:
    a, b = random_state(0), random_state(1)
    ones = {k: torch.ones(v.shape) for k, v in a.items() if k != "model.norm.weight"}
    merged, mean = dfs([a, b], [ones, ones]), linear([a, b])
    for key in SHAPES:
        torch.testing.assert_close(merged[key], mean[key])
    with pytest.raises(ValueError, match="some candidates"):
        dfs([a, b], [ones, {**ones, "model.norm.weight": torch.ones(4)}])
    with pytest.raises(ValueError, match="non-negative"):
        dfs([a, b], [ones, {**ones, "model.embed.weight": -torch.ones(9, 4)}])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_selection_keeps_keys_shapes_dtypes(dtype: torch.dtype) -> None:
    candidates = [random_state(s, dtype) for s in range(3)]
    importance = [{k: torch.rand(v.shape) for k, v in candidates[0].items()} for _ in range(3)]
    for merged in (frankenmerge(candidates, [1.0, 2.0, 3.0]), dfs(candidates, importance)):
        assert list(merged) == list(SHAPES)
        assert all(merged[k].shape == SHAPES[k] and merged[k].dtype == dtype for k in SHAPES)
