"""Grokfast-EMA: the filter follows mu = a*mu + (1-a)*g, g_hat = g + lambda*mu, and is low-pass."""

from __future__ import annotations

import torch

from agent_forge.optim.grokfast import grokfast_filter

ALPHA, LAMBDA = 0.9, 2.0


def _closed_form_ema(grads: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """mu_t written out as a weighted sum (mu_1 = g_1), a different computation from the recursion."""
    count = len(grads)
    total = alpha ** (count - 1) * grads[0].double()
    for index in range(1, count):
        total = total + (1 - alpha) * alpha ** (count - 1 - index) * grads[index].double()
    return total


def test_matches_formula_over_several_steps() -> None:
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(5, 7, generator=generator) for _ in range(8)]
    ema = None
    for step in range(len(grads)):
        filtered, ema = grokfast_filter(grads[step], ema, ALPHA, LAMBDA)
        expected_mu = _closed_form_ema(grads[: step + 1], ALPHA)
        torch.testing.assert_close(ema.double(), expected_mu, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            filtered.double(), grads[step].double() + LAMBDA * expected_mu, rtol=1e-5, atol=1e-6
        )


def test_constant_gradient_is_amplified_by_one_plus_lambda() -> None:
    """Low-pass: a constant (slowest possible) gradient passes the EMA whole, so g_hat = (1+lambda)*g.
    A high-pass filter (g + lambda*(g - mu)) would return g unchanged here."""
    grad = torch.full((4,), 0.5)
    ema = None
    for _ in range(20):
        filtered, ema = grokfast_filter(grad, ema, ALPHA, LAMBDA)
    torch.testing.assert_close(filtered, grad * (1 + LAMBDA))


def test_alternating_gradient_is_not_amplified() -> None:
    """The fastest signal (+g, -g, ...) averages out in the EMA, so g_hat stays close to g."""
    grad = torch.ones(3)
    ema = None
    for step in range(200):
        filtered, ema = grokfast_filter(grad * (-1) ** step, ema, 0.98, LAMBDA)
    gain = (filtered.abs() / grad).max().item()
    assert gain < 1.05, gain


def test_gradient_is_not_modified_and_ema_is_updated_in_place() -> None:
    grad = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    before = grad.clone()
    _, ema = grokfast_filter(grad, None, ALPHA, LAMBDA)
    ema_id = id(ema)
    _, ema_again = grokfast_filter(grad * 2, ema, ALPHA, LAMBDA)
    assert torch.equal(grad, before)
    assert id(ema_again) == ema_id
    torch.testing.assert_close(ema_again, before * (ALPHA + 2 * (1 - ALPHA)))


def test_lambda_zero_returns_raw_gradient() -> None:
    grad = torch.randn(6, generator=torch.Generator().manual_seed(2))
    filtered, _ = grokfast_filter(grad, torch.ones(6), ALPHA, 0.0)
    assert torch.equal(filtered, grad)
