"""The two in-place parameter updates of MuonGrokfast: Muon for hidden matrices, AdamW for the rest.

Each function steps the tensors it is given and owns no state of its own; the optimizer passes the buffers in.
The arithmetic follows ``torch.optim.Muon`` and ``torch.optim.AdamW`` operation by operation, so the tests
can compare against them to floating-point tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from agent_forge.optim.newton_schulz import match_rms_adamw_scale, orthogonalize


@dataclass(frozen=True)
class MuonHyper:
    lr: float
    weight_decay: float
    momentum: float
    nesterov: bool
    ns_steps: int
    ns_coefficients: tuple[float, float, float]
    ns_eps: float
    ns_dtype: torch.dtype


@dataclass(frozen=True)
class AdamWHyper:
    lr: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float


def muon_direction_(grad: Tensor, momentum_buffer: Tensor, hyper: MuonHyper) -> Tensor:
    """The momentum step (in place on the buffer) and the direction Newton-Schulz orthogonalises.

    Momentum is the EMA form ``B <- m*B + (1-m)*g`` (torch's); Nesterov looks ahead with
    ``(1-m)*g + m*B``.
    """
    momentum_buffer.lerp_(grad, 1.0 - hyper.momentum)
    return grad.lerp(momentum_buffer, hyper.momentum) if hyper.nesterov else momentum_buffer


def apply_orthogonal_update_(param: Tensor, update: Tensor, hyper: MuonHyper) -> None:
    """Decoupled decay with the plain lr (``1 - lr*wd``), then the step with the shape-scaled lr."""
    param.mul_(1.0 - hyper.lr * hyper.weight_decay)
    param.add_(update, alpha=-hyper.lr * match_rms_adamw_scale(param.shape))


def muon_update_stack_(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor], hyper: MuonHyper
) -> None:
    """One Muon step of same-shaped matrices: EMA momentum, Newton-Schulz, decoupled decay, AdamW-RMS-matched
    lr. The Newton-Schulz iterations of all of them run as one batched stack: the same result per matrix
    as one at a time, at a fraction of the small-matmul overhead."""
    directions = torch.stack([muon_direction_(g, b, hyper) for g, b in zip(grads, momentum_buffers, strict=True)])
    updates = orthogonalize(directions, hyper.ns_steps, hyper.ns_coefficients, hyper.ns_eps, hyper.ns_dtype)
    for param, update in zip(params, updates.unbind(0), strict=True):
        apply_orthogonal_update_(param, update, hyper)


def adamw_update_(
    param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: int, hyper: AdamWHyper
) -> None:
    """One AdamW step (Loshchilov & Hutter): bias-corrected moments, decay decoupled from the gradient.

    ``step`` is the 1-based count of this parameter's updates, used for the bias correction.
    """
    param.mul_(1.0 - hyper.lr * hyper.weight_decay)
    exp_avg.lerp_(grad, 1.0 - hyper.beta1)
    exp_avg_sq.mul_(hyper.beta2).addcmul_(grad, grad, value=1.0 - hyper.beta2)
    bias_correction1 = 1.0 - hyper.beta1**step
    bias_correction2_sqrt = (1.0 - hyper.beta2**step) ** 0.5
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(hyper.eps)
    param.addcdiv_(exp_avg, denom, value=-hyper.lr / bias_correction1)
