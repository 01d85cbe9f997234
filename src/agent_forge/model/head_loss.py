"""Output head and cross-entropy fused, with the gradient formed in the forward pass.

Deep supervision puts a full-vocabulary CE on every recursion step. Done the usual way, each step keeps
its (tokens x vocab) logits and log-softmax alive until the backward, and that backward allocates two more
tensors of the same size: for the 25M shape at 2048 tokens that is over a gigabyte per step. Here rows
are processed in chunks: each chunk's logits give the loss, each position's loss (for the ACT targets),
the halting-step logits to return, and d(loss)/d(hidden) and d(loss)/d(W) at once (softmax minus
one-hot, two matmuls). Only those gradients are kept; the backward just scales them. The matmul count is
the same as autograd's (one forward, two backward), no logits are ever stored, and gradients
are only formed when an input requires them.
"""

from __future__ import annotations

import torch

IGNORE_INDEX = -100
CHUNK_ELEMENTS = 1 << 25


def chunk_rows(vocab_size: int) -> int:
    """Rows per chunk: about 32M logits, at least 256 rows (a matmul needs rows to stream W efficiently)."""
    return max(256, CHUNK_ELEMENTS // vocab_size)


def _compute_dtype(tensor: torch.Tensor) -> torch.dtype:
    device = tensor.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else tensor.dtype


def _chunk_pass(
    h: torch.Tensor, w: torch.Tensor, target: torch.Tensor, want_grad: bool, keep: torch.Tensor | None
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """One chunk: (logits of the rows in `keep` or None, summed CE, per-row CE, softmax minus one-hot in
    the compute dtype or None).

    The logits buffer becomes the softmax in place (no second chunk-sized tensor), so the kept rows are
    copied out first; the gradient is scaled by valid/norm in one pass.
    """
    logits = (h @ w.t()).float()
    kept = None if keep is None else logits.index_select(0, keep)
    valid = (target != IGNORE_INDEX).float()
    index = target.clamp_min(0).unsqueeze(1)
    picked = logits.gather(1, index).squeeze(1)
    top = logits.amax(dim=1)
    probs = logits.sub_(top.unsqueeze(1)).exp_()
    norm = probs.sum(dim=1)
    row_loss = (top + norm.log() - picked) * valid
    total = row_loss.sum()
    if not want_grad:
        return kept, total, row_loss, None
    probs.mul_((valid / norm).unsqueeze(1)).scatter_add_(1, index, -valid.unsqueeze(1))
    return kept, total, row_loss, probs.to(h.dtype)


class HeadCrossEntropy(torch.autograd.Function):
    """loss = sum over rows with target != -100 of CE(hidden @ W^T, target); also each row's CE (0 where
    ignored), detached."""

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        out_logits: torch.Tensor | None,
        out_rows: torch.Tensor | None,
        rows: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = _compute_dtype(hidden)
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        w = weight.to(dtype)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        row_loss = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        grad_hidden = (
            torch.empty(hidden.shape, dtype=torch.float32, device=hidden.device) if want_grad else None
        )
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if want_grad else None
        )
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, hidden.shape[0], rows):
                part = slice(start, start + rows)
                h = hidden[part].to(dtype)
                keep = None if out_logits is None else out_rows[part].nonzero().squeeze(1)
                kept, chunk_total, row_loss[part], grad_logits = _chunk_pass(h, w, targets[part], want_grad, keep)
                total += chunk_total
                if kept is not None:
                    out_logits[part].index_copy_(0, keep, kept.to(out_logits.dtype))
                if grad_logits is not None:
                    grad_hidden[part] = grad_logits @ w
                    grad_weight += (grad_logits.t() @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight)
        ctx.dtypes = (hidden.dtype, weight.dtype)
        ctx.mark_non_differentiable(row_loss)
        return total, row_loss

    @staticmethod
    def backward(ctx, grad_total: torch.Tensor, _grad_rows: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        grad_hidden, grad_weight = ctx.saved_tensors
        hidden_dtype, weight_dtype = ctx.dtypes
        scale = grad_total.float()
        grad_h = (grad_hidden * scale).to(hidden_dtype) if ctx.needs_input_grad[0] else None
        grad_w = (grad_weight * scale).to(weight_dtype) if ctx.needs_input_grad[1] else None
        return grad_h, grad_w, None, None, None, None


def head_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    out_logits: torch.Tensor | None = None,
    out_rows: torch.Tensor | None = None,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(summed CE, per-position CE shaped like targets, detached) for hidden (..., d), head weight (V, d)
    and targets (...).

    When out_logits (rows, V) is given, the logits of the rows where out_rows is True are written into it
    (the caller collects each position's halting-step logits without another matmul). `chunk` overrides
    the rows per chunk.
    """
    flat = hidden.reshape(-1, hidden.shape[-1])
    rows = None if out_rows is None else out_rows.reshape(-1)
    chunk = chunk or chunk_rows(weight.shape[0])
    total, row_loss = HeadCrossEntropy.apply(flat, weight, targets.reshape(-1), out_logits, rows, chunk)
    return total, row_loss.view(targets.shape)
