"""Fused head cross-entropy against autograd's linear + cross_entropy."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agent_forge.model.head_loss import chunk_rows, head_cross_entropy


def case(rows: int = 23, vocab: int = 50, dim: int = 12, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, dim, generator=gen, requires_grad=True)
    weight = (torch.randn(vocab, dim, generator=gen) * 0.5).requires_grad_(True)
    targets = torch.randint(0, vocab, (rows,), generator=gen)
    targets[::4] = -100
    return hidden, weight, targets


@pytest.mark.parametrize("chunk", [None, 5, 7])
def test_loss_gradients_and_row_losses_equal_autograd(chunk: int | None) -> None:
    hidden, weight, targets = case()
    total, row_loss = head_cross_entropy(hidden, weight, targets, chunk=chunk)
    logits = hidden @ weight.t()
    expected = F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")
    torch.testing.assert_close(total, expected)
    grads = torch.autograd.grad(0.37 * total, (hidden, weight))
    expected_grads = torch.autograd.grad(0.37 * expected, (hidden, weight))
    for got, want in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(got, want)
    per_row = F.cross_entropy(logits, targets, ignore_index=-100, reduction="none")
    torch.testing.assert_close(row_loss, per_row.detach())
    assert not row_loss.requires_grad and torch.all(row_loss[targets == -100] == 0)


def test_selected_rows_receive_their_logits() -> None:
    hidden, weight, targets = case()
    out = torch.full((23, 50), float("nan"))
    rows = torch.zeros(23, dtype=torch.bool)
    rows[[0, 5, 22]] = True
    head_cross_entropy(hidden, weight, targets, out, rows, chunk=4)
    torch.testing.assert_close(out[rows], (hidden @ weight.t())[rows].detach())
    assert torch.isnan(out[~rows]).all()


def test_bf16_autocast_is_close_to_float32() -> None:
    hidden, weight, targets = case(vocab=300, dim=32)
    reference = F.cross_entropy(hidden @ weight.t(), targets, ignore_index=-100, reduction="sum")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, _ = head_cross_entropy(hidden, weight, targets)
    grad_h, grad_w = torch.autograd.grad(total, (hidden, weight))
    ref_h, ref_w = torch.autograd.grad(reference, (hidden, weight))
    assert abs(total.item() - reference.item()) < 0.01 * reference.item()
    assert grad_h.dtype == hidden.dtype and grad_w.dtype == weight.dtype
    assert (grad_w - ref_w).norm() < 0.02 * ref_w.norm() and (grad_h - ref_h).norm() < 0.02 * ref_h.norm()


def test_without_grad_no_gradient_is_formed() -> None:
    hidden, weight, targets = case()
    with torch.no_grad():
        total, _ = head_cross_entropy(hidden, weight, targets)
    assert not total.requires_grad


def test_chunks_hold_enough_rows_to_stream_the_weight() -> None:
    assert chunk_rows(32768) == 1024 and chunk_rows(2048) == 16384 and chunk_rows(1 << 20) == 256
