"""MAG gate: a per-channel convex blend of attention (short range) and memory (long range) outputs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.model.config import ForgeConfig


def bernoulli_entropy(logits: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of gates g = sigmoid(s) read as Bernoulli probabilities: softplus(s) - s*g.

    ln 2 at g = 0.5, 0 when saturated; written from the logits it needs no clamping and three ops.
    """
    logits, gate = logits.float(), gate.float()
    return (F.softplus(logits) - logits * gate).mean()


class MAGGate(nn.Module):
    """g = sigmoid(gate_net(h)); output g*attn + (1-g)*mem. Starts at g = 0.5 (output bias zero)."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        self.hidden = nn.Linear(config.hidden_size, config.gate_hidden, bias=False)
        self.proj = nn.Linear(config.gate_hidden, config.hidden_size, bias=True)

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate g and its logits (for the entropy)."""
        logits = self.proj(F.silu(self.hidden(h)))
        return torch.sigmoid(logits), logits

    @staticmethod
    def blend(gate: torch.Tensor, attn_out: torch.Tensor, mem_out: torch.Tensor) -> torch.Tensor:
        """g*a + (1-g)*m written as m + g*(a - m): one fewer full-size product."""
        return torch.addcmul(mem_out, gate, attn_out - mem_out)
