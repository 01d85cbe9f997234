"""Parallel "thought" streams for Quiet-STaR (Phase 3): many short continuations, one batched pass per token.

`prefix_state` runs the model once over the real sequences and keeps every layer's rotary keys/values
and the memory at every chunk boundary. `branch` starts S streams, stream s anchored at position
anchor_pos[s] of sequence batch_index[s]. `stream_forward` feeds the next tokens of all streams at once.

A stream anchored at p sees the prefix tokens <= p (within the attention window) and its own earlier
tokens, never another stream's tokens or later prefix positions. It reads the memory as it was after the
chunks completed by position p; thought tokens do not write memory. Hence a stream's outputs equal a plain
forward over input_ids[b, :p+1] + stream tokens exactly when the stream stays inside one memory chunk
(positions p+1 .. p+L); past a chunk boundary the plain forward would also read what the chunk wrote.

Attention groups the streams by sequence: the queries of the G streams of one sequence attend, in one SDPA
call, to that sequence's prefix keys and to the G streams' own keys, with a mask that keeps each stream to
its anchor, its window and itself. The prefix keys are therefore never copied per stream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from agent_forge.model.attention import short_attention
from agent_forge.model.block import MAGBlock
from agent_forge.model.gate import MAGGate
from agent_forge.model.memory import FactorizedMemory


@dataclass
class PrefixState:
    """Per layer: rotary keys/values (B,H,N,D) and memories after 0..n complete chunks (B,n+1,dm,dm)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    boundaries: list[torch.Tensor]
    key_valid: torch.Tensor | None
    logits: torch.Tensor
    hidden: torch.Tensor
    halt_steps: torch.Tensor
    chunk: int
    window: int

    @property
    def length(self) -> int:
        return self.keys[0].shape[2]


@dataclass
class StreamCache:
    """S streams over a prefix: their anchors, their slot in the per-sequence groups, their own K/V."""

    prefix: PrefixState
    batch_index: torch.Tensor
    anchor_pos: torch.Tensor
    slots: torch.Tensor
    group_size: int
    memory: list[torch.Tensor]
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0


@dataclass
class StreamOutput:
    logits: torch.Tensor
    hidden: torch.Tensor
    cache: StreamCache
    halt_steps: torch.Tensor


def stream_slots(batch_index: torch.Tensor, batch: int) -> tuple[torch.Tensor, int]:
    """Slot of each stream in a (batch, G) grid, G the largest number of streams on one sequence."""
    onehot = F.one_hot(batch_index, batch)
    rank = (onehot.cumsum(0) - 1).gather(1, batch_index.unsqueeze(1)).squeeze(1)
    group = int(onehot.sum(0).max())
    return batch_index * group + rank, group


def branch_streams(state: PrefixState, batch_index: torch.Tensor, anchor_pos: torch.Tensor) -> StreamCache:
    """Start one stream per (batch_index[s], anchor_pos[s]) with empty own K/V."""
    batch_index, anchor_pos = batch_index.long(), anchor_pos.long()
    if batch_index.shape != anchor_pos.shape or batch_index.dim() != 1:
        raise ValueError("batch_index and anchor_pos must be 1-D tensors of the same length")
    if bool((anchor_pos < 0).any()) or bool((anchor_pos >= state.length).any()):
        raise ValueError(f"anchor positions must lie in [0, {state.length})")
    batch = state.keys[0].shape[0]
    slots, group = stream_slots(batch_index, batch)
    chunk_index = (anchor_pos + 1) // state.chunk
    memory = [b[batch_index, chunk_index] for b in state.boundaries]
    empty = [k.new_zeros(len(batch_index), k.shape[1], 0, k.shape[3]) for k in state.keys]
    return StreamCache(state, batch_index, anchor_pos, slots, group, memory, empty, list(empty))


def stream_mask(cache: StreamCache, new: int, total: int) -> torch.Tensor:
    """(B, 1, G*new, N + G*total): prefix keys up to the anchor inside the window, own earlier tokens."""
    prefix, group, window = cache.prefix, cache.group_size, cache.prefix.window
    batch, device = prefix.keys[0].shape[0], cache.anchor_pos.device
    anchors = torch.full((batch * group,), -1, dtype=torch.long, device=device)
    anchors = anchors.index_copy(0, cache.slots, cache.anchor_pos).view(batch, group, 1, 1)
    own_query = torch.arange(new, device=device) + (total - new)
    query_pos = anchors + 1 + own_query.view(1, 1, new, 1)
    key_pos = torch.arange(prefix.length, device=device)
    prefix_ok = (key_pos <= anchors) & (query_pos - key_pos < window)
    if prefix.key_valid is not None:
        prefix_ok = prefix_ok & prefix.key_valid.view(batch, 1, 1, -1)
    own_key = torch.arange(total, device=device)
    own_ok = (own_key <= own_query.unsqueeze(1)) & (own_query.unsqueeze(1) - own_key < window)
    same = torch.eye(group, dtype=torch.bool, device=device)
    stream_ok = (same.view(group, 1, group, 1) & own_ok.view(1, new, 1, total)).reshape(group * new, -1)
    prefix_ok = prefix_ok.reshape(batch, group * new, prefix.length)
    stream_ok = stream_ok.unsqueeze(0).expand(batch, -1, -1)
    return torch.cat((prefix_ok, stream_ok), dim=-1).unsqueeze(1)


def to_groups(t: torch.Tensor, cache: StreamCache) -> torch.Tensor:
    """(S, H, X, D) -> (B, H, G*X, D), empty slots zero."""
    batch = cache.prefix.keys[0].shape[0]
    _, heads, length, dim = t.shape
    grid = t.new_zeros(batch * cache.group_size, heads, length, dim).index_copy(0, cache.slots, t)
    grid = grid.view(batch, cache.group_size, heads, length, dim).transpose(1, 2)
    return grid.reshape(batch, heads, cache.group_size * length, dim)


def from_groups(t: torch.Tensor, cache: StreamCache, length: int) -> torch.Tensor:
    """(B, H, G*L, D) -> (S, H, L, D)."""
    batch, heads, _, dim = t.shape
    grid = t.view(batch, heads, cache.group_size, length, dim).transpose(1, 2)
    return grid.reshape(batch * cache.group_size, heads, length, dim).index_select(0, cache.slots)


def stream_memory_read(memory: FactorizedMemory, h: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
    """Read the frozen memory of each stream: out(M q); nothing is written."""
    _, _, q = memory.keys_values_queries(h, None)
    with torch.autocast(h.device.type, enabled=False):
        reads = q @ state.transpose(-1, -2)
    return memory.out(reads.to(h.dtype))


def stream_layer(
    layer: MAGBlock,
    x: torch.Tensor,
    positions: torch.Tensor,
    cache: StreamCache,
    index: int,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One MAG layer for the new stream tokens; returns x and the layer's stream K/V so far."""
    h = layer.attn_norm(x)
    q, k, v = layer.attn.project(h, positions)
    keys = torch.cat((cache.keys[index], k), dim=2)
    values = torch.cat((cache.values[index], v), dim=2)
    all_keys = torch.cat((cache.prefix.keys[index], to_groups(keys, cache)), dim=2)
    all_values = torch.cat((cache.prefix.values[index], to_groups(values, cache)), dim=2)
    grouped = short_attention(to_groups(q, cache), all_keys, all_values, attn_mask=mask)
    attn_out = layer.attn.merge_heads(from_groups(grouped, cache, q.shape[2]))
    mem_out = stream_memory_read(layer.memory, h, cache.memory[index])
    x = x + MAGGate.blend(layer.gate(h)[0], attn_out, mem_out)
    return x + layer.mlp(layer.mlp_norm(x)), keys, values


def backbone_streams(
    layers: list[MAGBlock], x: torch.Tensor, cache: StreamCache
) -> tuple[torch.Tensor, StreamCache]:
    """All layers over the new tokens of every stream; returns the pre-norm output and the grown cache."""
    new = x.shape[1]
    total = cache.length + new
    positions = cache.anchor_pos.unsqueeze(1) + 1 + cache.length + torch.arange(new, device=x.device)
    mask = stream_mask(cache, new, total)
    keys, values = [], []
    for index, layer in enumerate(layers):
        x, k, v = stream_layer(layer, x, positions, cache, index, mask)
        keys.append(k)
        values.append(v)
    return x, replace(cache, keys=keys, values=values, length=total)
