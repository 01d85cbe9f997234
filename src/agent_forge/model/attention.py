"""Causal sliding-window attention with partial RoPE, in O(n*w) memory.

A query at position i sees keys at positions j with i - window < j <= i. Sequences no longer than the
window use plain causal SDPA; short ones (up to twice the window and 256 tokens) one SDPA call with an
(n, n) band mask; longer ones without padding on the CPU go to `band_attention` (mask-free flash calls per
window-sized block, merged by log-sum-exp). The rest (padding, other devices, tracing) is cut into query
blocks of a quarter window (at least 64) that each attend to the keys their band reaches, sliced in place
(views, no copies), so no n x n mask ever exists for a long sequence and each query scores at most
w + b - 1 keys instead of the 2w of whole-window blocks. Measured (forward + backward, one layer, 2 threads):
n=2048, w=1024: 100 ms against 127 ms with whole-window blocks and 91 ms for full causal attention; n=128,
w=64: band 4.8 ms, quarter blocks 6.2 ms.
QK-clip's `window_max_logit` uses the square mask on short sequences and the whole-window block layout on
long ones: it only needs a maximum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.model.band_attention import BandAttention, band_attention_usable
from agent_forge.model.config import ForgeConfig
from agent_forge.model.rope import apply_rotary, rotary_tables


def band_mask(window: int, device: torch.device) -> torch.Tensor:
    """(w, 2w) mask: local query a sees local key j (previous block first) iff a < j <= a + w."""
    query = torch.arange(window, device=device).unsqueeze(1)
    key = torch.arange(2 * window, device=device).unsqueeze(0)
    return (key > query) & (key <= query + window)


def blocked_layout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Pad to whole blocks; queries (B,nb,H,w,D) and keys/values of the previous+own block (B,nb,H,2w,D).

    Inputs are (B,H,N,D) views of (B,N,H,D) projections, so blocking the queries is a free view; only
    keys and values are copied (once, at twice their size) to place each block beside its predecessor.
    """
    batch, heads, length, dim = q.shape
    blocks = math.ceil(length / window)
    pad = blocks * window - length

    def split(t: torch.Tensor) -> torch.Tensor:
        t = t.transpose(1, 2)
        if pad:
            t = F.pad(t, (0, 0, 0, 0, 0, pad))
        return t.reshape(batch, blocks, window, heads, dim)

    qb, kb, vb = split(q), split(k), split(v)
    kk = torch.cat((F.pad(kb[:, :-1], (0, 0, 0, 0, 0, 0, 1, 0)), kb), dim=2)
    vv = torch.cat((F.pad(vb[:, :-1], (0, 0, 0, 0, 0, 0, 1, 0)), vb), dim=2)
    return qb.transpose(2, 3), kk.transpose(2, 3), vv.transpose(2, 3), pad


def blocked_mask(
    blocks: int, window: int, key_valid: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """Boolean mask broadcastable to (B, nb, H, w, 2w): band, no keys before position 0, padding keys off."""
    mask = band_mask(window, device).expand(blocks, window, 2 * window).clone()
    mask[0, :, :window] = False
    if key_valid is None:
        return mask.unsqueeze(1)
    valid = F.pad(key_valid, (0, blocks * window - key_valid.shape[1]), value=True)
    valid = valid.view(-1, blocks, window)
    valid2 = torch.cat((F.pad(valid[:, :-1], (0, 0, 1, 0), value=False), valid), dim=2)
    query = torch.arange(window, device=device).unsqueeze(1)
    diagonal = torch.arange(2 * window, device=device).unsqueeze(0) == query + window
    return ((mask & valid2.unsqueeze(2)) | diagonal).unsqueeze(2)


def square_band_mask(
    length: int, window: int, key_valid: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """(L,L) sliding-window causal mask, or (B,1,L,L) with padding keys removed (a query sees itself)."""
    query = torch.arange(length, device=device).unsqueeze(1)
    key = torch.arange(length, device=device).unsqueeze(0)
    band = (key <= query) & (query - key < window)
    if key_valid is None:
        return band
    return ((band & key_valid[:, None, None, :]) | (key == query)).contiguous()


def query_block(window: int) -> int:
    """Queries per block on long inputs: a quarter window, at least 64 (never more than the window)."""
    return max(window // 4, min(window, 64))


def short_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, **kwargs: object) -> torch.Tensor:
    """SDPA for short query blocks. On a CPU, bf16 inputs run in float32 and the output is cast back:
    both kernels accumulate in float32, but at these sizes the bf16 backward is about three times slower
    (measured forward + backward, 16 x 4 heads x 128 tokens x 32 dims, 2 threads: 6.6 ms against 18.6;
    from about 1024 tokens on the two are level, and `BandAttention` keeps its own kernels)."""
    if q.dtype != torch.bfloat16 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, **kwargs)
    with torch.autocast("cpu", enabled=False):  # autocast would cast the float32 inputs back to bf16
        out = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), **kwargs)
    return out.to(q.dtype)


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, window: int, key_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Sliding-window causal attention over a whole sequence; q/k/v (B,H,N,D), key_valid (B,N) or None."""
    length = q.shape[2]
    if length <= window and key_valid is None:
        return short_attention(q, k, v, is_causal=True)
    if length <= min(2 * window, 256):
        mask = square_band_mask(length, window, key_valid, q.device)
        return short_attention(q, k, v, attn_mask=mask)
    if band_attention_usable(q, key_valid):
        return BandAttention.apply(q, k, v, window)
    block = query_block(window)
    outputs, bands = [], {}
    for start in range(0, length, block):
        end = min(start + block, length)
        first_key = max(0, start - window + 1)
        qs, ks, vs = q[:, :, start:end], k[:, :, first_key:end], v[:, :, first_key:end]
        if start == 0 and key_valid is None:
            outputs.append(short_attention(qs, ks, vs, is_causal=True))
            continue
        shape = (end - start, end - first_key, start - first_key)
        if shape not in bands:
            bands[shape] = _offset_band(*shape, window, q.device)
        mask = bands[shape]
        if key_valid is not None:
            diagonal = _offset_band(*shape, 1, q.device)
            mask = (mask & key_valid[:, None, None, first_key:end]) | diagonal
        outputs.append(short_attention(qs, ks, vs, attn_mask=mask))
    return torch.cat(outputs, dim=2)


def _offset_band(queries: int, keys: int, offset: int, window: int, device: torch.device) -> torch.Tensor:
    """(queries, keys) mask: query a (position offset + a among the keys) sees key j iff 0 <= offset+a-j < w."""
    gap = torch.arange(queries, device=device).unsqueeze(1) + offset - torch.arange(keys, device=device)
    return (gap >= 0) & (gap < window)


@torch.no_grad()
def window_max_logit(
    q: torch.Tensor, k: torch.Tensor, window: int, key_valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Largest pre-softmax logit q.k/sqrt(D) per head over exactly the pairs attention uses.

    The maximum is taken in the scores' own dtype and scaled afterwards (a positive scale keeps the
    order, and a maximum needs no float32 copy of the scores); short sequences use the square mask of
    `window_attention`, long ones the whole-window block layout.
    """
    scale = q.shape[-1] ** -0.5
    length = q.shape[2]
    if length <= min(2 * window, 256):
        mask = square_band_mask(length, window, key_valid, q.device)
        scores = (q @ k.transpose(-1, -2)).masked_fill_(~mask, float("-inf"))
        return scores.amax(dim=(0, 2, 3)).float() * scale
    qb, kk, _, _ = blocked_layout(q, k, k, window)
    mask = blocked_mask(qb.shape[1], window, key_valid, q.device)
    if mask.dim() == 4:
        mask = mask.unsqueeze(0)
    best = torch.full((q.shape[1],), float("-inf"), device=q.device)
    for block in range(qb.shape[1]):
        scores = (qb[:, block] @ kk[:, block].transpose(-1, -2)).masked_fill_(~mask[:, block], float("-inf"))
        best = torch.maximum(best, scores.amax(dim=(0, 2, 3)).float() * scale)
    return best


class SlidingWindowAttention(nn.Module):
    """Multi-head attention exposing what QK-clip needs.

    q_proj, k_proj (rows grouped per head), n_heads, head_dim, rotary_dim and max_logit.
    """

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        d = config.hidden_size
        self.n_heads = config.num_heads
        self.head_dim = config.head_dim
        self.rotary_dim = config.rotary_dim
        self.window = config.window
        self.rope_theta = float(config.rope_theta)
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.register_buffer("max_logit", torch.zeros(self.n_heads), persistent=False)
        self.track_max_logit = False

    def project(self, h: torch.Tensor, positions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Rotary q, k and v of shape (B, H, L, D); positions (L,) or (B, L)."""
        batch, length, _ = h.shape
        shape = (batch, length, self.n_heads, self.head_dim)
        q, k, v = (p(h).view(shape).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        cos, sin = rotary_tables(positions, self.rotary_dim, self.rope_theta, q.dtype)
        if cos.dim() == 3:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        return apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v

    def merge_heads(self, out: torch.Tensor) -> torch.Tensor:
        """(B, H, L, D) -> output projection of (B, L, H*D)."""
        batch, _, length, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(batch, length, self.n_heads * self.head_dim))

    def forward(
        self, h: torch.Tensor, positions: torch.Tensor, key_valid: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Whole-sequence attention; also returns the rotary (k, v) for a cache or a prefix state."""
        q, k, v = self.project(h, positions)
        if self.track_max_logit:
            self.max_logit.copy_(window_max_logit(q, k, self.window, key_valid))
        return self.merge_heads(window_attention(q, k, v, self.window, key_valid)), (k, v)

    def forward_cached(
        self,
        h: torch.Tensor,
        positions: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor],
        key_valid: torch.Tensor | None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """New tokens attend to the cached window and to each other; returns the window to keep.

        `key_valid` (B, P+L) covers cached and new keys, or is None when nothing is padding.
        """
        q, k, v = self.project(h, positions)
        keys, values = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        length, total = q.shape[2], keys.shape[2]
        mask = None
        if length > 1 or key_valid is not None or total > self.window:
            offset = total - length
            query_pos = torch.arange(length, device=h.device).unsqueeze(1) + offset
            key_pos = torch.arange(total, device=h.device).unsqueeze(0)
            mask = (key_pos <= query_pos) & (query_pos - key_pos < self.window)
            if key_valid is not None:
                mask = (mask & key_valid[:, None, None, :]) | (key_pos == query_pos)
        out = short_attention(q, keys, values, attn_mask=mask)
        start = max(total - (self.window - 1), 0)
        return self.merge_heads(out), (keys[:, :, start:], values[:, :, start:])
