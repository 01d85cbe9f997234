"""The baking objective against a direct computation of KL(teacher || student)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributions import Categorical, kl_divergence

from agent_forge.baking import per_token_kl, token_kl


def random_logits(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_per_token_kl_equals_the_direct_formula() -> None:
    teacher, student = random_logits(2, 5, 11, seed=0), random_logits(2, 5, 11, seed=1)
    direct = kl_divergence(Categorical(logits=teacher), Categorical(logits=student))
    by_hand = (teacher.softmax(-1) * (teacher.log_softmax(-1) - student.log_softmax(-1))).sum(-1)
    got = per_token_kl(F.log_softmax(teacher, -1), student)
    torch.testing.assert_close(got, direct)
    torch.testing.assert_close(got, by_hand)


def test_token_kl_averages_over_masked_positions_only() -> None:
    teacher, student = random_logits(2, 5, 7, seed=2), random_logits(2, 5, 7, seed=3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])
    direct = kl_divergence(Categorical(logits=teacher), Categorical(logits=student))
    got = token_kl(F.log_softmax(teacher, -1), student, mask)
    torch.testing.assert_close(got, direct[mask.bool()].mean())


def test_kl_is_zero_only_when_the_distributions_agree() -> None:
    logits = random_logits(3, 4, 9, seed=4)
    mask = torch.ones(3, 4)
    assert float(token_kl(F.log_softmax(logits, -1), logits + 5.0, mask)) < 1e-6  # a shift changes nothing
    assert float(token_kl(F.log_softmax(logits, -1), random_logits(3, 4, 9, seed=5), mask)) > 0.1


def test_teacher_zeros_contribute_nothing_and_gradients_reach_the_student() -> None:
    teacher = torch.full((1, 1, 4), float("-inf"))
    teacher[..., :2] = torch.log(torch.tensor([0.25, 0.75]))
    student = torch.zeros(1, 1, 4, requires_grad=True)
    loss = token_kl(teacher, student, torch.ones(1, 1))
    expected = 0.25 * torch.log(torch.tensor(0.25 / 0.25)) + 0.75 * torch.log(torch.tensor(0.75 / 0.25))
    torch.testing.assert_close(loss.detach(), expected)
    loss.backward()
    assert torch.isfinite(student.grad).all() and float(student.grad.abs().sum()) > 0
