"""The two in-place parameter updates of MuonGrokfast: Muon for hidden matrices, AdamW for the rest.

Each function does one tensor's step and owns no state of its own; the optimizer passes the buffers in.
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


def muon_update_(param: Tensor, grad: Tensor, momentum_buffer: Tensor, hyper: MuonHyper) -> None:
    """One Muon step: EMA momentum, Newton-Schulz, decoupled decay, AdamW-RMS-matched lr.

    Momentum is the EMA form ``B <- m*B + (1-m)*g`` (torch's); Nesterov looks ahead with
    ``(1-m)*g + m*B``. Decay uses the plain lr (``1 - lr*wd``), the step uses the shape-scaled lr.
    """
    momentum_buffer.lerp_(grad, 1.0 - hyper.momentum)
    direction = grad.lerp(momentum_buffer, hyper.momentum) if hyper.nesterov else momentum_buffer
    update = orthogonalize(direction, hyper.ns_steps, hyper.ns_coefficients, hyper.ns_eps, hyper.ns_dtype)
    param.mul_(1.0 - hyper.lr * hyper.weight_decay)
    param.add_(update, alpha=-hyper.lr * match_rms_adamw_scale(param.shape))


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
