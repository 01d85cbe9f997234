"""One pre-norm Titans-MAG layer: sliding-window attention and long-term memory in parallel, blended by
the MAG gate, then a SwiGLU MLP."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from agent_forge.model.attention import SlidingWindowAttention
from agent_forge.model.config import ForgeConfig
from agent_forge.model.gate import MAGGate, bernoulli_entropy
from agent_forge.model.memory import FactorizedMemory, MemoryState


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) with gate and up fused in one matrix (one GEMM instead of two)."""

    def __init__(self, hidden_size: int, mlp_hidden: int) -> None:
        super().__init__()
        self.mlp_hidden = mlp_hidden
        self.gate_up = nn.Linear(hidden_size, 2 * mlp_hidden, bias=False)
        self.down = nn.Linear(mlp_hidden, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).split(self.mlp_hidden, dim=-1)
        return self.down(F.silu(gate) * up)


@dataclass
class LayerState:
    """What one layer carries between calls on the same sequences: the attention window and the memory."""

    keys: torch.Tensor
    values: torch.Tensor
    memory: MemoryState

    def select(self, index: torch.Tensor) -> LayerState:
        return LayerState(
            self.keys.index_select(0, index), self.values.index_select(0, index), self.memory.select(index)
        )


@dataclass
class BlockOutput:
    hidden: torch.Tensor
    state: LayerState
    boundaries: torch.Tensor
    gate_entropy: torch.Tensor | None


class MAGBlock(GradientCheckpointingLayer):
    """x + blend(g, attn(n(x)), mem(n(x))), then x + mlp(n(x)).

    `model.activation_checkpointing_enable()` recomputes each layer in the backward instead of keeping its
    activations (about a third more compute for a large cut in training memory).
    """

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        eps = float(config.rms_norm_eps)
        self.attn_norm = nn.RMSNorm(config.hidden_size, eps=eps)
        self.attn = SlidingWindowAttention(config)
        self.memory = FactorizedMemory(config)
        self.gate = MAGGate(config)
        self.mlp_norm = nn.RMSNorm(config.hidden_size, eps=eps)
        self.mlp = SwiGLU(config.hidden_size, config.mlp_hidden)

    def forward(
        self,
        x: torch.Tensor,
        positions: torch.Tensor,
        start: int,
        key_valid: torch.Tensor | None,
        past: LayerState | None = None,
        with_entropy: bool = False,
    ) -> BlockOutput:
        """`key_valid` covers the cached keys and the new ones (B, P+L), or is None without padding."""
        h = self.attn_norm(x)
        if past is None:
            attn_out, (keys, values) = self.attn(h, positions, key_valid)
        else:
            attn_out, (keys, values) = self.attn.forward_cached(
                h, positions, (past.keys, past.values), key_valid
            )
        new_valid = None if key_valid is None else key_valid[:, -x.shape[1] :]
        mem_out, mem_state, boundaries = self.memory(
            h, None if past is None else past.memory, start, new_valid
        )
        gate, gate_logits = self.gate(h)
        x = x + MAGGate.blend(gate, attn_out, mem_out)
        x = x + self.mlp(self.mlp_norm(x))
        entropy = bernoulli_entropy(gate_logits, gate) if with_entropy else None
        return BlockOutput(x, LayerState(keys, values, mem_state), boundaries, entropy)
