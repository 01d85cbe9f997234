"""The eight merge combos on a tiny real model: a trunk, three specialists forked from it (D2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from agent_forge.merge import (
    MergeParams,
    apply_merge_combo,
    decode_combo,
    describe_combo,
    fisher_importance,
    linear,
    slerp_chain,
    ties,
)

VOCAB, WIDTH = 16, 8


class TinyLM(nn.Module):
    """Embedding, two residual MLP layers with norms, final norm, head: the key layout of our models."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(WIDTH), nn.Linear(WIDTH, WIDTH), nn.GELU()) for _ in range(2)
        )
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(ids)
        for layer in self.layers:
            hidden = hidden + layer(hidden)
        return self.head(self.norm(hidden))


def task_batch(shift: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Next token = (token + shift) mod VOCAB: each specialist learns its own shift."""
    ids = torch.randint(0, VOCAB, (64,), generator=torch.Generator().manual_seed(seed))
    return ids, (ids + shift) % VOCAB


def loss_of(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.cross_entropy(model(batch[0]), batch[1])


def trained(state: dict, shift: int, steps: int) -> TinyLM:
    model = TinyLM()
    model.load_state_dict(state)
    for step in range(steps):  # plain SGD by hand: torch.optim's first use imports seconds of modules
        grads = torch.autograd.grad(loss_of(model, task_batch(shift, step)), list(model.parameters()))
        with torch.no_grad():
            for param, grad in zip(model.parameters(), grads, strict=True):
                param.sub_(0.5 * grad)
    return model


@pytest.fixture(scope="module")
def family() -> tuple[dict, list[dict]]:
    torch.manual_seed(0)
    trunk = trained(TinyLM().state_dict(), 1, 20)
    specialists = [trained(trunk.state_dict(), shift, 20).state_dict() for shift in (1, 2, 3)]
    return trunk.state_dict(), specialists


HELDOUT = [task_batch(shift, 1000 + shift) for shift in (1, 2, 3)]


def heldout_score(state: dict) -> float:
    """1 / mean held-out loss of the loaded model: measured behaviour, higher is better."""
    model = TinyLM()
    model.load_state_dict(state)
    with torch.no_grad():
        return 1.0 / (sum(loss_of(model, batch).item() for batch in HELDOUT) / len(HELDOUT))


def measured_fisher(state: dict) -> dict:
    model = TinyLM()
    model.load_state_dict(state)
    return fisher_importance(model, HELDOUT, loss_of)


def run_combo(family: tuple[dict, list[dict]], combo_id: int, seed: int = 0, **params: object) -> dict:
    base, models = family
    return apply_merge_combo(
        models,
        combo_id,
        base,
        fitness=heldout_score,
        importance=measured_fisher,
        generator=torch.Generator().manual_seed(seed),
        params=MergeParams(**params),
    )


def test_combo_ids_decode_by_bit() -> None:
    assert [describe_combo(i) for i in (0, 1, 2, 4, 7)] == [
        "0 (000): Linear -> DARE -> FrankenMerge",
        "1 (001): SLERP -> DARE -> FrankenMerge",
        "2 (010): Linear -> TIES -> FrankenMerge",
        "4 (100): Linear -> DARE -> DFS",
        "7 (111): SLERP -> TIES -> DFS",
    ]
    assert len({(c.interpolation, c.task_arithmetic, c.selection) for c in map(decode_combo, range(8))}) == 8
    for bad in (-1, 8, 2.0):
        with pytest.raises(ValueError):
            decode_combo(bad)


@pytest.mark.parametrize("combo_id", range(8))
def test_every_combo_gives_a_loadable_deterministic_model(family: tuple, combo_id: int) -> None:
    base, _ = family
    merged = run_combo(family, combo_id, frankenmerge_mode="weighted")
    again = run_combo(family, combo_id, frankenmerge_mode="weighted")
    assert list(merged) == list(base)
    for key, tensor in base.items():
        assert merged[key].shape == tensor.shape and merged[key].dtype == tensor.dtype
        assert torch.equal(merged[key], again[key])
    assert math.isfinite(heldout_score(merged))


@pytest.mark.parametrize("combo_id", range(8))
def test_merging_copies_of_the_trunk_returns_the_trunk(family: tuple, combo_id: int) -> None:
    base, _ = family
    merged = run_combo((base, [base, base, base]), combo_id)
    for key, tensor in base.items():
        torch.testing.assert_close(merged[key], tensor, rtol=1e-6, atol=1e-6)


def test_stage_three_chooses_among_the_stage_two_result_and_the_models(family: tuple) -> None:
    base, models = family
    stage2 = ties(linear(models), base, 0.2)
    picked_stage2 = apply_merge_combo(models, 2, base, fitness=[4.0, 1.0, 2.0, 3.0])
    picked_model = apply_merge_combo(models, 2, base, fitness=[1.0, 1.0, 2.0, 3.0])
    slerped = ties(slerp_chain(models), base, 0.2)
    one_hot = [{k: torch.full_like(v, float(i == 0)) for k, v in base.items()} for i in range(4)]
    dfs_stage2 = apply_merge_combo(models, 7, base, importance=one_hot)
    for key in base:
        assert torch.equal(picked_stage2[key], stage2[key])
        assert torch.equal(picked_model[key], models[2][key])
        torch.testing.assert_close(dfs_stage2[key], slerped[key])


def test_seeds_change_random_combos_only(family: tuple) -> None:
    base, models = family
    stage2_wins = [4.0, 1.0, 2.0, 3.0]
    dare_a, dare_b = (
        apply_merge_combo(models, 0, base, fitness=stage2_wins, generator=torch.Generator().manual_seed(s))
        for s in (1, 2)
    )
    ties_a, ties_b = run_combo(family, 2, seed=1), run_combo(family, 2, seed=2)
    assert any(not torch.equal(dare_a[k], dare_b[k]) for k in dare_a)
    assert all(torch.equal(ties_a[k], ties_b[k]) for k in ties_a)


def test_missing_or_malformed_inputs_fail_before_merging(family: tuple) -> None:
    base, models = family
    with pytest.raises(ValueError, match="fitness"):
        apply_merge_combo(models, 2, base)
    with pytest.raises(ValueError, match="importance"):
        apply_merge_combo(models, 6, base)
    with pytest.raises(ValueError, match="Generator"):
        apply_merge_combo(models, 0, base, fitness=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="stage-3 candidate"):
        apply_merge_combo(models, 2, base, fitness=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="two models"):
        apply_merge_combo(models[:1], 2, base, fitness=[1.0, 2.0])
    with pytest.raises(ValueError):
        MergeParams(dare_drop=1.0)
    with pytest.raises(ValueError):
        MergeParams(frankenmerge_mode="random")
