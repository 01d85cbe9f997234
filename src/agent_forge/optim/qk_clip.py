"""QK-clip (MuonClip, Kimi K2 2025): rescale query/key weights of heads whose attention logits ran away.

For a head whose largest pre-softmax logit ``s`` exceeds ``tau`` the scale is ``gamma = tau / s``. Its
non-rotary query and key rows are multiplied by ``sqrt(gamma)`` (their dot product by gamma), its rotary
query rows by ``gamma`` and its rotary key rows are left alone (the rotary dot product is linear in the
query, so it too shrinks by gamma). Every logit of the head therefore shrinks by exactly gamma and the
largest becomes ``tau``, while the rotary key projection, shared position geometry in MLA-style models, is
untouched. This assumes logits are bilinear in the ``q_proj``/``k_proj`` outputs (no norm on q or k).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
import torch.distributed as dist
from torch import Tensor, nn


class QKClipTarget(Protocol):
    """The attention interface of docs/design/interfaces.md that QK-clip reads and rescales."""

    q_proj: nn.Linear
    k_proj: nn.Linear
    n_heads: int
    head_dim: int
    rotary_dim: int
    max_logit: Tensor


def check_target(module: QKClipTarget) -> None:
    """Fail early, with the reason, on a module whose rows are not grouped ``n_heads x head_dim``."""
    width = module.n_heads * module.head_dim
    for name in ("q_proj", "k_proj"):
        rows = getattr(module, name).weight.shape[0]
        if rows != width:
            raise ValueError(f"QK-clip: {name} has {rows} rows, expected n_heads*head_dim = {width}")
    if not 0 <= module.rotary_dim <= module.head_dim:
        raise ValueError(f"QK-clip: rotary_dim {module.rotary_dim} must lie in [0, {module.head_dim}]")
    if tuple(module.max_logit.shape) != (module.n_heads,):
        raise ValueError(f"QK-clip: max_logit has shape {tuple(module.max_logit.shape)}, expected (n_heads,)")


def head_row_scales(gamma: Tensor, head_dim: int, rotary_dim: int) -> tuple[Tensor, Tensor]:
    """Per-row factors for q_proj and k_proj from per-head ``gamma`` (rows grouped head by head)."""
    rotary = torch.arange(head_dim, device=gamma.device) < rotary_dim
    per_head = gamma[:, None].expand(-1, head_dim)
    root = per_head.sqrt()
    q_scale = torch.where(rotary, per_head, root)
    k_scale = torch.where(rotary, torch.ones_like(root), root)
    return q_scale.reshape(-1), k_scale.reshape(-1)


def _scale_rows_(linear: nn.Linear, scale: Tensor) -> None:
    scale = scale.to(linear.weight.dtype)
    linear.weight.mul_(scale[:, None])
    if linear.bias is not None:
        linear.bias.mul_(scale)


@torch.no_grad()
def qk_clip_(module: QKClipTarget, tau: float) -> Tensor:
    """Clip one attention module in place; return the number of heads clipped (0-d tensor, no sync).

    ``max_logit`` is multiplied by gamma as well, so it keeps describing the current weights and a second
    step without a new forward pass does not clip the same heads again.
    """
    check_target(module)
    max_logit = module.max_logit.detach().float()
    clipped = max_logit > tau
    gamma = torch.where(clipped, tau / max_logit, torch.ones_like(max_logit))
    q_scale, k_scale = head_row_scales(gamma, module.head_dim, module.rotary_dim)
    _scale_rows_(module.q_proj, q_scale)
    _scale_rows_(module.k_proj, k_scale)
    module.max_logit.mul_(gamma.to(module.max_logit.dtype))
    return clipped.sum()


@torch.no_grad()
def share_max_logits_(modules: Sequence[QKClipTarget]) -> None:
    """Under torch.distributed, replace every rank's max logits by the maximum over ranks.

    Each rank sees different data, so without this the ranks would clip different heads and their weights
    would drift apart; one all-reduce keeps the clip, like the rest of the step, identical on every rank.
    """
    if not modules or not (dist.is_available() and dist.is_initialized()):
        return
    stacked = torch.cat([module.max_logit.detach().float() for module in modules])
    dist.all_reduce(stacked, op=dist.ReduceOp.MAX)
    for module, shared in zip(modules, stacked.split([m.n_heads for m in modules]), strict=True):
        module.max_logit.copy_(shared)


def apply_qk_clip(modules: Sequence[QKClipTarget], tau: float) -> Tensor:
    """Clip every module after the rank-wide maximum is shared; return the total of heads clipped."""
    share_max_logits_(modules)
    counts = [qk_clip_(module, tau) for module in modules]
    return torch.stack(counts).sum() if counts else torch.zeros((), dtype=torch.long)
