"""Adaptive computation time: a per-position halting head with bootstrapped targets from an EMA teacher.

The head reads the latent z of each recursion step and gives one halting logit q_t per position; the
halting probability is p_t = sigmoid(q_t). Its BCE target says whether halting at step t costs at most
`step_cost` nats against going on:

    y_t = 1 if l_t <= F_{t+1} + step_cost else 0,
    F_t = pbar_t * l_t + (1 - pbar_t) * F_{t+1},   F_{T-1} = l_{T-1},

where l_t is the position's cross-entropy at step t and F_{t+1} the loss expected from going on when the
EMA teacher (a copy of the head, decay `act_ema`, like a Q-learning target network) decides where to stop
(pbar are its halting probabilities). `step_cost` is the price of one more recursion step in nats, as in
ponder-cost ACT. A position whose later steps do not lower its loss by more than that halts; one that a
later step helps goes on. Top-1 correctness would be a coarser signal: on text a small model's recursion
rarely flips an argmax while it does move the loss, so a correctness target halted everything at step 0.
The last step always halts and has no loss.

At inference a position halts at the first step whose p_t reaches `act_threshold` (a higher threshold
halts later).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.model.config import ForgeConfig


class ACTHead(nn.Module):
    """RMSNorm + Linear(d, 1) on the latent z, with an EMA teacher held in buffers (not parameters)."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.eps = float(config.rms_norm_eps)
        self.norm = nn.RMSNorm(d, eps=self.eps)
        self.proj = nn.Linear(d, 1, bias=True)
        self.register_buffer("teacher_norm", torch.ones(d))
        self.register_buffer("teacher_weight", torch.zeros(1, d))
        self.register_buffer("teacher_bias", torch.zeros(1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Halting logits (...,) for latents (..., d)."""
        return self.proj(self.norm(z)).squeeze(-1)

    @torch.no_grad()
    def teacher(self, z: torch.Tensor) -> torch.Tensor:
        """Halting logits of the EMA copy; never carries gradient."""
        normed = F.rms_norm(z.float(), (z.shape[-1],), self.teacher_norm, self.eps)
        return F.linear(normed, self.teacher_weight, self.teacher_bias).squeeze(-1)

    @torch.no_grad()
    def copy_to_teacher(self) -> None:
        self.teacher_norm.copy_(self.norm.weight)
        self.teacher_weight.copy_(self.proj.weight)
        self.teacher_bias.copy_(self.proj.bias)

    @torch.no_grad()
    def update_teacher(self, decay: float) -> None:
        """teacher <- decay*teacher + (1-decay)*head."""
        self.teacher_norm.lerp_(self.norm.weight, 1.0 - decay)
        self.teacher_weight.lerp_(self.proj.weight, 1.0 - decay)
        self.teacher_bias.lerp_(self.proj.bias, 1.0 - decay)


def halting_probability(act_logits: torch.Tensor) -> torch.Tensor:
    """sigmoid of the halting logits, float32."""
    return torch.sigmoid(act_logits.float())


def halting_steps(probabilities: list[torch.Tensor], threshold: float) -> torch.Tensor:
    """Index of the first step whose halting probability reaches the threshold (the last step otherwise)."""
    passed = torch.stack(probabilities, dim=-1) >= threshold
    passed[..., -1] = True
    return passed.to(torch.int8).argmax(dim=-1)


@torch.no_grad()
def act_targets(
    losses: list[torch.Tensor], teacher_probs: list[torch.Tensor], step_cost: float
) -> list[torch.Tensor]:
    """y_t for every step but the last (see the module docstring) from per-position losses l_t (nats) and
    the teacher's halting probabilities."""
    steps = len(losses)
    targets: list[torch.Tensor] = [losses[0]] * (steps - 1)
    future = losses[-1].float()
    for t in range(steps - 2, -1, -1):
        loss = losses[t].float()
        targets[t] = (loss <= future + step_cost).float()
        future = teacher_probs[t] * loss + (1.0 - teacher_probs[t]) * future
    return targets


def act_loss(
    act_logits: list[torch.Tensor], targets: list[torch.Tensor], valid: torch.Tensor
) -> torch.Tensor:
    """Mean BCE of the halting logits of steps 0..T-2 against their targets over valid positions."""
    total = act_logits[0].new_zeros((), dtype=torch.float32)
    for logits, target in zip(act_logits[:-1], targets, strict=True):
        bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
        total = total + (bce * valid).sum()
    return total / (valid.sum().clamp_min(1.0) * max(len(targets), 1))
