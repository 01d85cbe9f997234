"""The Titans-MAG backbone: token embedding, MAG layers and the final norm; it yields the features x."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from agent_forge.model.block import LayerState, MAGBlock
from agent_forge.model.config import ForgeConfig


@dataclass
class BackboneOutput:
    """Features x, each layer's state after the call, each layer's chunk-boundary memories, gate entropy."""

    hidden: torch.Tensor
    states: list[LayerState]
    boundaries: list[torch.Tensor]
    gate_entropy: torch.Tensor | None


class ForgeBackbone(nn.Module):
    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(MAGBlock(config) for _ in range(config.num_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=float(config.rms_norm_eps))

    def forward(
        self,
        input_ids: torch.Tensor,
        start: int = 0,
        key_valid: torch.Tensor | None = None,
        past: list[LayerState] | None = None,
        with_entropy: bool = False,
    ) -> BackboneOutput:
        """Run the tokens at positions start.. (past holds the earlier ones when start > 0)."""
        positions = torch.arange(start, start + input_ids.shape[1], device=input_ids.device)
        x = self.embed_tokens(input_ids)
        states, boundaries, entropies = [], [], []
        for index, layer in enumerate(self.layers):
            out = layer(x, positions, start, key_valid, None if past is None else past[index], with_entropy)
            x = out.hidden
            states.append(out.state)
            boundaries.append(out.boundaries)
            if out.gate_entropy is not None:
                entropies.append(out.gate_entropy)
        entropy = torch.stack(entropies).mean() if entropies else None
        return BackboneOutput(self.norm(x), states, boundaries, entropy)
