"""Diagonal Fisher measurement and Fisher merging (DFS) on tiny real models and data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agent_forge.merge import dfs, fisher_importance, linear


class TinyLM(nn.Module):
    """Embedding, one hidden layer with dropout, head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 6)
        self.hidden = nn.Linear(6, 6)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Linear(6, 12, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(torch.tanh(self.hidden(self.embed(ids)))))


def lm_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs), targets)


def tiny_batches(seed: int, count: int = 4) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        (torch.randint(0, 12, (5,), generator=gen), torch.randint(0, 12, (5,), generator=gen))
        for _ in range(count)
    ]


def test_fisher_is_the_mean_squared_gradient_in_eval_mode() -> None:
    torch.manual_seed(0)
    model, batches = TinyLM(), tiny_batches(1)
    model.train()
    fisher = fisher_importance(model, batches, lm_loss)
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for batch in batches:
        grads = torch.autograd.grad(lm_loss(model, batch), list(model.parameters()))
        for (name, _), grad in zip(model.named_parameters(), grads, strict=True):
            expected[name] += grad**2 / len(batches)
    for name, value in expected.items():
        torch.testing.assert_close(fisher[name], value, rtol=1e-5, atol=1e-8)
    assert all((v >= 0).all() for v in fisher.values())


def test_fisher_keys_follow_the_state_dict_including_tied_weights() -> None:
    model = TinyLM()
    fisher = fisher_importance(model, tiny_batches(2), lm_loss)
    assert set(fisher) == set(model.state_dict())
    assert torch.equal(fisher["head.weight"], fisher["embed.weight"])
    assert fisher["embed.weight"].sum() > 0


def test_fisher_skips_frozen_parameters_and_needs_a_batch() -> None:
    model = TinyLM()
    model.hidden.bias.requires_grad_(False)
    assert "hidden.bias" not in fisher_importance(model, tiny_batches(3, 1), lm_loss)
    with pytest.raises(ValueError, match="batch"):
        fisher_importance(model, [], lm_loss)


def regression_task(features: slice, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs use only ``features``; the others are zero, so their weights get no gradient."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.zeros(64, 10)
    inputs[:, features] = torch.randn(64, 5, generator=gen)
    true_weights = torch.randn(10, 1, generator=gen)
    return inputs, inputs @ true_weights


def mse(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    return nn.functional.mse_loss(model(batch[0]), batch[1])


def train_from(trunk: nn.Module, task: tuple[torch.Tensor, torch.Tensor]) -> nn.Module:
    model = nn.Linear(10, 1, bias=False)
    model.load_state_dict(trunk.state_dict())
    for _ in range(300):  # plain SGD by hand: torch.optim's first use imports seconds of modules
        (grad,) = torch.autograd.grad(mse(model, task), [model.weight])
        with torch.no_grad():
            model.weight.sub_(0.1 * grad)
    return model


def test_fisher_merging_keeps_both_specialists_skills_where_averaging_loses_them() -> None:
    torch.manual_seed(0)
    trunk = nn.Linear(10, 1, bias=False)
    task_a, task_b = regression_task(slice(0, 5), 1), regression_task(slice(5, 10), 2)
    model_a, model_b = train_from(trunk, task_a), train_from(trunk, task_b)
    states = [model_a.state_dict(), model_b.state_dict()]
    importance = [fisher_importance(model_a, [task_a], mse), fisher_importance(model_b, [task_b], mse)]
    probe = nn.Linear(10, 1, bias=False)

    def loss_with(state: dict) -> float:
        probe.load_state_dict(state)
        with torch.no_grad():
            return mse(probe, task_a).item() + mse(probe, task_b).item()

    fused, averaged = loss_with(dfs(states, importance)), loss_with(linear(states))
    assert fused < 1e-3, fused
    assert averaged > 100 * fused, (averaged, fused)
