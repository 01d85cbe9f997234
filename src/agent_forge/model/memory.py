"""Titans long-term memory, factorised: a d_mem x d_mem matrix per sequence, written chunk by chunk.

Keys, values and queries are projected from the model width down to d_mem (the factorisation: the memory
costs d_mem^2 state instead of d^2). For chunk c with keys K_c and values V_c (rows are tokens) the
surprise is the gradient of the associative loss sum_i ||M k_i - v_i||^2, in closed form

    grad_M = 2 (M A_c - B_c),   A_c = K_c^T K_c,   B_c = V_c^T K_c,

and the Titans update is S <- eta*S - theta*grad_M, M <- (1-alpha)*M + S. Everything is plain matmuls
(no autograd inside the forward), so the recurrence exports to ONNX. Tokens of chunk c read M as it was
after chunks < c, which keeps the memory causal. M and S start at zero for every sequence and are never
carried from one batch to the next; only a generation cache carries them within one sequence.
The recurrence runs in float32 even under bf16 autocast: it sums many small updates.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.model.config import ForgeConfig


@dataclass
class MemoryState:
    """Per-sequence memory of one layer: M, its momentum S and the statistics of the unfinished chunk."""

    memory: torch.Tensor
    momentum: torch.Tensor
    pending_kk: torch.Tensor
    pending_vk: torch.Tensor

    @classmethod
    def zeros(cls, batch: int, d_mem: int, device: torch.device) -> MemoryState:
        z = torch.zeros(batch, d_mem, d_mem, device=device)
        return cls(z, z.clone(), z.clone(), z.clone())

    def select(self, index: torch.Tensor) -> MemoryState:
        """Rows `index` of the batch (beam reordering, batch expansion)."""
        return MemoryState(*(t.index_select(0, index) for t in self.tensors()))

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return self.memory, self.momentum, self.pending_kk, self.pending_vk


@dataclass(frozen=True)
class MemoryConstants:
    """alpha (forgetting), eta (momentum), theta (step on the surprise) of the Titans update."""

    alpha: float
    eta: float
    theta: float

    @classmethod
    def from_config(cls, config: ForgeConfig) -> MemoryConstants:
        return cls(alpha=config.mem_alpha, eta=config.mem_eta, theta=config.mem_theta)


def surprise_gradient(memory: torch.Tensor, kk: torch.Tensor, vk: torch.Tensor) -> torch.Tensor:
    """Closed-form grad_M of sum_i ||M k_i - v_i||^2 given A = sum k k^T and B = sum v k^T."""
    return 2.0 * (memory @ kk - vk)


def chunk_statistics(k: torch.Tensor, v: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A_c = K_c^T K_c and B_c = V_c^T K_c for every chunk: (B, n_chunks, d_mem, d_mem) each, one bmm."""
    batch, length, d_mem = k.shape
    n_chunks = -(-length // chunk)
    pad = n_chunks * chunk - length
    kv = torch.cat((k, v), dim=-1)
    if pad:
        kv = F.pad(kv, (0, 0, 0, pad))
    kv = kv.view(batch, n_chunks, chunk, 2 * d_mem)
    stats = kv.transpose(-1, -2) @ kv[..., :d_mem]
    return stats[..., :d_mem, :], stats[..., d_mem:, :]


def memory_scan(
    kk: torch.Tensor, vk: torch.Tensor, memory: torch.Tensor, momentum: torch.Tensor, const: MemoryConstants
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Apply the update for every chunk in kk/vk; returns [M before chunk 0, ..., M after the last] and S.

    S <- eta*S - theta*2(M A - B) is one fused baddbmm per chunk, M <- (1-alpha)*M + S one add;
    unbind (not indexing) keeps the backward from allocating a full-size zero gradient per chunk.
    """
    memories = [memory]
    scaled_vk = (vk * (2.0 * const.theta)).unbind(1)
    for kk_c, vk_c in zip(kk.unbind(1), scaled_vk, strict=True):
        momentum = torch.baddbmm(
            torch.add(vk_c, momentum, alpha=const.eta), memory, kk_c, alpha=-2.0 * const.theta
        )
        memory = torch.add(momentum, memory, alpha=1.0 - const.alpha)
        memories.append(memory)
    return memories, momentum


def memory_recurrence(
    k: torch.Tensor,
    v: torch.Tensor,
    q: torch.Tensor,
    state: MemoryState,
    start: int,
    chunk: int,
    const: MemoryConstants,
) -> tuple[torch.Tensor, MemoryState, torch.Tensor]:
    """Reads M q for tokens at positions start.. and the state after writing them.

    The segment is left-padded to the chunk boundary so that an unfinished chunk (held in the state as
    pending statistics, which is zero whenever start is on a boundary) and a fresh sequence follow one
    code path. Also returns the memory at every chunk
    boundary crossed, (B, n+1, d_mem, d_mem), which the stream API reads.
    """
    offset = start % chunk
    if offset:
        k, v, q = (F.pad(t, (0, 0, offset, 0)) for t in (k, v, q))
    total = k.shape[1]
    complete = total // chunk
    kk, vk = chunk_statistics(k, v, chunk)
    if offset:
        kk = torch.cat((kk[:, :1] + state.pending_kk.unsqueeze(1), kk[:, 1:]), dim=1)
        vk = torch.cat((vk[:, :1] + state.pending_vk.unsqueeze(1), vk[:, 1:]), dim=1)
    memories, momentum = memory_scan(kk[:, :complete], vk[:, :complete], state.memory, state.momentum, const)
    boundaries = torch.stack(memories, dim=1)
    n_read = kk.shape[1]
    if n_read * chunk > total:
        q = F.pad(q, (0, 0, 0, n_read * chunk - total))
    qc = q.view(q.shape[0], n_read, chunk, q.shape[2])
    reads = (qc @ boundaries[:, :n_read].transpose(-1, -2)).flatten(1, 2)[:, offset:total]
    if complete < n_read:
        pending = (kk[:, complete], vk[:, complete])
    else:
        pending = (torch.zeros_like(state.pending_kk), torch.zeros_like(state.pending_vk))
    return reads, MemoryState(memories[-1], momentum, *pending), boundaries


class FactorizedMemory(nn.Module):
    """Projects to d_mem, runs the Titans recurrence, projects the reads back to the model width."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        self.d_mem = config.d_mem
        self.chunk = config.mem_chunk
        self.const = MemoryConstants.from_config(config)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.d_mem, bias=False)
        self.out = nn.Linear(config.d_mem, config.hidden_size, bias=False)

    def set_constants(self, const: MemoryConstants) -> None:
        """Specialists change alpha/eta/theta without touching any tensor shape (D2)."""
        self.const = const

    def keys_values_queries(
        self, h: torch.Tensor, key_valid: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Unit-norm keys and queries, raw values, float32; padding tokens write nothing."""
        k, v, q = self.qkv(h).float().split(self.d_mem, dim=-1)
        k, q = F.normalize(k, dim=-1), F.normalize(q, dim=-1)
        if key_valid is not None:
            keep = key_valid.unsqueeze(-1).to(k.dtype)
            k, v = k * keep, v * keep
        return k, v, q

    def forward(
        self, h: torch.Tensor, state: MemoryState | None, start: int, key_valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, MemoryState, torch.Tensor]:
        """Memory output (B, L, d), the new state and the chunk-boundary memories."""
        k, v, q = self.keys_values_queries(h, key_valid)
        if state is None:
            state = MemoryState.zeros(h.shape[0], self.d_mem, h.device)
        with torch.autocast(h.device.type, enabled=False):
            reads, state, boundaries = memory_recurrence(k, v, q, state, start, self.chunk, self.const)
        return self.out(reads.to(h.dtype)), state, boundaries
