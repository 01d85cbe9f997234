"""The TRM x Titans-MAG forward pass in numpy, with a per-sequence cache for decoding.

Per layer: RMSNorm, sliding-window attention with partial RoPE and Titans memory in parallel, blended by the
MAG gate, then a SwiGLU MLP. Then the TRM recursion with ACT halting: each position stops at the first step
whose halting probability reaches the threshold (the last step always halts) and the tied head reads the
normed answer state of that step. The cache keeps the last window-1 keys and values and the memory state
of every layer, exactly what ``ForgeCache`` keeps, so a token-by-token decode equals a full-sequence pass.
Arrays carry a leading batch axis (B sequences advanced together, all at the same position); generation
uses B = 1, the held-out evaluation right-padded batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import RuntimeConfig
from .layers import (
    MemoryConstants,
    MemoryState,
    Rotary,
    memory_segment,
    rms_norm,
    sigmoid,
    silu,
    unit_rows,
    window_attention,
)
from .weights import Weights, fuse


@dataclass
class LayerCache:
    keys: np.ndarray  # (B, H, P, D), P <= window - 1
    values: np.ndarray
    memory: MemoryState


@dataclass
class Cache:
    """What decoding carries from one call to the next: every layer's window and memory, and the position."""

    layers: list[LayerCache] = field(default_factory=list)
    seen: int = 0


class MAGLayer:
    """One Titans-MAG layer; the five projections that read the normed input run as one matmul."""

    def __init__(self, weights: Weights, prefix: str, config: RuntimeConfig, rotary: Rotary) -> None:
        self.config, self.rotary = config, rotary
        self.eps = float(config.rms_norm_eps)
        self.attn_norm = weights.tensor(f"{prefix}attn_norm.weight")
        self.mlp_norm = weights.tensor(f"{prefix}mlp_norm.weight")
        names = ["attn.q_proj", "attn.k_proj", "attn.v_proj", "memory.qkv", "gate.hidden"]
        parts = [weights.linear(prefix + n) for n in names]
        ends = np.cumsum([p.out_features for p in parts]).tolist()
        self.bounds = list(zip([0, *ends[:-1]], ends, strict=True))
        self.fused = fuse(parts)
        self.parts = parts if self.fused is None else []
        self.o_proj = weights.linear(f"{prefix}attn.o_proj")
        self.mem_out = weights.linear(f"{prefix}memory.out")
        self.gate_proj = weights.linear(f"{prefix}gate.proj")
        self.gate_up, self.down = weights.linear(f"{prefix}mlp.gate_up"), weights.linear(f"{prefix}mlp.down")
        self.const = MemoryConstants(config.mem_alpha, config.mem_eta, config.mem_theta)

    def empty_cache(self, batch: int) -> LayerCache:
        c = self.config
        empty = np.zeros((batch, c.num_heads, 0, c.head_dim), np.float32)
        return LayerCache(empty, empty, MemoryState.zeros(batch, c.d_mem))

    def _projections(self, h: np.ndarray) -> list[np.ndarray]:
        if self.fused is not None:
            out = self.fused(h)
            return [out[..., a:b] for a, b in self.bounds]
        return [p(h) for p in self.parts]

    def _attention(self, q: np.ndarray, k: np.ndarray, v: np.ndarray, cache: LayerCache, start: int
                   ) -> np.ndarray:
        c = self.config
        batch, length = q.shape[:2]
        heads = [t.reshape(batch, length, c.num_heads, c.head_dim).swapaxes(1, 2) for t in (q, k, v)]
        cos, sin = self.rotary.tables(start, length)
        q, k = self.rotary.apply(heads[0], cos, sin), self.rotary.apply(heads[1], cos, sin)
        keys = np.concatenate((cache.keys, k), axis=2)
        values = np.concatenate((cache.values, heads[2]), axis=2)
        out = window_attention(q, keys, values, c.window)
        keep = max(keys.shape[2] - (c.window - 1), 0)
        cache.keys, cache.values = keys[:, :, keep:], values[:, :, keep:]
        return self.o_proj(out.swapaxes(1, 2).reshape(batch, length, -1))

    def __call__(self, x: np.ndarray, cache: LayerCache, start: int) -> np.ndarray:
        h = rms_norm(x, self.attn_norm, self.eps)
        q, k, v, mem_qkv, gate_hidden = self._projections(h)
        attn = self._attention(q, k, v, cache, start)
        d_mem = self.config.d_mem
        mk, mv, mq = mem_qkv[..., :d_mem], mem_qkv[..., d_mem : 2 * d_mem], mem_qkv[..., 2 * d_mem :]
        reads, cache.memory = memory_segment(unit_rows(mk), mv, unit_rows(mq), cache.memory, start,
                                             self.config.mem_chunk, self.const)
        mem = self.mem_out(reads.astype(np.float32))
        gate = sigmoid(self.gate_proj(silu(gate_hidden)))
        x = x + mem + gate * (attn - mem)
        gate_up = self.gate_up(rms_norm(x, self.mlp_norm, self.eps))
        half = gate_up.shape[-1] // 2
        return x + self.down(silu(gate_up[..., :half]) * gate_up[..., half:])


class ResidualMLP:
    def __init__(self, weights: Weights, prefix: str, eps: float) -> None:
        self.norm, self.eps = weights.tensor(f"{prefix}norm.weight"), eps
        self.up, self.down = weights.linear(f"{prefix}up"), weights.linear(f"{prefix}down")

    def __call__(self, residual: np.ndarray, mixed: np.ndarray) -> np.ndarray:
        return residual + self.down(silu(self.up(rms_norm(mixed, self.norm, self.eps))))


class Recursion:
    """TRM refine/update steps with ACT early exit; the head runs once per position, on its halting step."""

    def __init__(self, weights: Weights, config: RuntimeConfig, head: np.ndarray) -> None:
        eps = float(config.rms_norm_eps)
        self.config, self.eps, self.head = config, eps, head
        self.z_init = weights.tensor("trm.z_init")
        self.refine = ResidualMLP(weights, "trm.refine.", eps)
        self.update = ResidualMLP(weights, "trm.update.", eps)
        self.act_norm, self.act_proj = weights.tensor("act_head.norm.weight"), weights.linear("act_head.proj")
        self.norm_out = weights.tensor("norm_out.weight")

    def _step(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for _ in range(self.config.trm_micro_steps):
            z = self.refine(z, x + y + z)
        return self.update(y, y + z), z

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Logits (N, V) and the halting step (0-based) of each row of features x (N, d)."""
        t_max = self.config.trm_t_max
        hidden, halt = np.empty_like(x), np.full(x.shape[0], t_max - 1)
        active, y = np.arange(x.shape[0]), x
        z = np.broadcast_to(self.z_init, x.shape)
        for t in range(t_max):
            y, z = self._step(x, y, z)
            if t + 1 == t_max:
                stop = np.ones(active.shape[0], dtype=bool)
            else:
                act = self.act_proj(rms_norm(z, self.act_norm, self.eps))[:, 0]
                stop = sigmoid(act) >= np.float32(self.config.act_threshold)
            hidden[active[stop]] = rms_norm(y[stop], self.norm_out, self.eps)
            halt[active[stop]] = t
            keep = ~stop
            if not keep.any():
                break
            active, x, y, z = active[keep], x[keep], y[keep], z[keep]
        return hidden @ self.head.T, halt


class ForgeRuntimeModel:
    """The whole model for one sequence at a time; ``forward`` feeds new tokens through a cache."""

    def __init__(self, weights: Weights, config: RuntimeConfig) -> None:
        self.config = config
        self.embed = weights.tensor("model.embed_tokens.weight")
        rotary = Rotary(config.rotary_dim, float(config.rope_theta))
        self.layers = [MAGLayer(weights, f"model.layers.{i}.", config, rotary)
                       for i in range(config.num_layers)]
        self.norm = weights.tensor("model.norm.weight")
        head = weights.tensors.get("lm_head.weight", self.embed)
        self.recursion = Recursion(weights, config, head)

    def new_cache(self, batch: int = 1) -> Cache:
        return Cache([layer.empty_cache(batch) for layer in self.layers], 0)

    def features(self, ids: np.ndarray, cache: Cache) -> np.ndarray:
        """Backbone features (B, L, d) of new tokens (B, L), in blocks of at most ``window`` positions
        (bounds the attention score matrix)."""
        outputs = []
        block = max(self.config.window, 1)
        for begin in range(0, ids.shape[1], block):
            x = self.embed[ids[:, begin : begin + block]]
            for layer, layer_cache in zip(self.layers, cache.layers, strict=True):
                x = layer(x, layer_cache, cache.seen)
            cache.seen += x.shape[1]
            outputs.append(rms_norm(x, self.norm, float(self.config.rms_norm_eps)))
        return np.concatenate(outputs, axis=1)

    def forward(self, ids: np.ndarray | list[int], cache: Cache | None = None, last_only: bool = False
                ) -> tuple[np.ndarray, np.ndarray]:
        """Logits and halting steps of the new tokens.

        ``ids`` (L,) gives logits (L, V) (or (1, V) with ``last_only``); ``ids`` (B, L) gives (B, L, V)
        (or (B, 1, V)) and a cache of batch B.
        """
        ids = np.asarray(ids, dtype=np.int64)
        single = ids.ndim == 1
        ids = ids.reshape(1, -1) if single else ids
        if ids.size == 0 or ids.ndim != 2:
            raise ValueError("forward needs token ids of shape (L,) or (B, L) with L >= 1")
        if ids.min() < 0 or ids.max() >= self.config.vocab_size:
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size})")
        cache = cache if cache is not None else self.new_cache(ids.shape[0])
        x = self.features(ids, cache)
        x = x[:, -1:] if last_only else x
        logits, halt = self.recursion(x.reshape(-1, x.shape[-1]))
        logits, halt = logits.reshape(*x.shape[:2], -1), halt.reshape(x.shape[:2])
        return (logits[0], halt[0]) if single else (logits, halt)

