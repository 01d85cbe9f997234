"""Sliding-window attention: exact against a brute-force masked reference, O(n*w) layout, partial RoPE."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.model.attention import (
    SlidingWindowAttention,
    band_mask,
    blocked_layout,
    query_block,
    window_attention,
    window_max_logit,
)
from agent_forge.model.rope import apply_rotary, rotary_tables
from support.shapes import unit_config


def allowed_pairs(length: int, window: int, key_valid: torch.Tensor | None) -> torch.Tensor:
    """(B or 1, 1, N, N) boolean: key j visible to query i iff i - window < j <= i (and j not padding)."""
    i = torch.arange(length)
    allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)
    if key_valid is None:
        return allowed[None, None]
    return (allowed[None, None] & key_valid[:, None, None, :]) | torch.eye(length, dtype=torch.bool)


def reference_attention(q, k, v, window, key_valid=None):
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~allowed_pairs(q.shape[2], window, key_valid), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v, scores


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, 70),
    window=st.integers(1, 24),
    batch=st.integers(1, 2),
    padded=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_window_attention_equals_the_masked_reference(length, window, batch, padded, seed) -> None:
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, 2, length, 8, generator=gen) for _ in range(3))
    key_valid = None
    if padded:
        key_valid = torch.ones(batch, length, dtype=torch.bool)
        key_valid[0, : length // 3] = False
    expected, _ = reference_attention(q, k, v, window, key_valid)
    torch.testing.assert_close(window_attention(q, k, v, window, key_valid), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("length", "window"), [(700, 256), (701, 300), (300, 200), (257, 64)])
@pytest.mark.parametrize("padded", [False, True])
def test_long_inputs_in_quarter_window_blocks_equal_the_reference(length, window, padded) -> None:
    """Past 256 tokens and twice the window the blocks hold w/4 queries (at least 64); partial last block."""
    gen = torch.Generator().manual_seed(length)
    q, k, v = (torch.randn(2, 2, length, 4, generator=gen) for _ in range(3))
    key_valid = None
    if padded:
        key_valid = torch.ones(2, length, dtype=torch.bool)
        key_valid[1, : length // 2] = False
    expected, _ = reference_attention(q, k, v, window, key_valid)
    torch.testing.assert_close(window_attention(q, k, v, window, key_valid), expected, atol=1e-5, rtol=1e-5)
    assert query_block(window) == max(window // 4, 64)


@pytest.mark.parametrize(("length", "window"), [(5, 8), (8, 8), (12, 8), (37, 8), (40, 8)])
@pytest.mark.parametrize("padded", [False, True])
def test_max_logit_is_the_largest_visible_logit_per_head(length, window, padded) -> None:
    gen = torch.Generator().manual_seed(length)
    q, k = (torch.randn(2, 3, length, 8, generator=gen) * 3 for _ in range(2))
    key_valid = None
    if padded:
        key_valid = torch.ones(2, length, dtype=torch.bool)
        key_valid[1, :2] = False
    _, scores = reference_attention(q, k, k, window, key_valid)
    torch.testing.assert_close(window_max_logit(q, k, window, key_valid), scores.amax(dim=(0, 2, 3)))


def test_blocked_layout_holds_only_two_windows_of_keys_per_block() -> None:
    q = k = v = torch.randn(1, 2, 100, 4)
    qb, kk, vv, pad = blocked_layout(q, k, v, 16)
    assert qb.shape == (1, 7, 2, 16, 4) and kk.shape == vv.shape == (1, 7, 2, 32, 4)
    assert pad == 7 * 16 - 100
    assert band_mask(16, q.device).shape == (16, 32)


def test_blocked_attention_never_builds_an_n_by_n_mask(monkeypatch) -> None:
    """Every mask handed to SDPA has a last dimension of at most 2*window."""
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.append((k.shape[-2], None if attn_mask is None else attn_mask.shape[-1]))
        return real(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q = k = v = torch.randn(1, 2, 256, 4)
    window_attention(q, k, v, 16)
    window_attention(q, k, v, 16, torch.ones(1, 256, dtype=torch.bool))
    assert seen and all(keys <= 32 and (mask is None or mask <= 32) for keys, mask in seen)


def test_partial_rope_leaves_the_non_rotary_dims_alone_and_is_relative() -> None:
    x = torch.randn(1, 1, 6, 16)
    cos, sin = rotary_tables(torch.arange(6), 8, 10000.0, x.dtype)
    rotated = apply_rotary(x, cos, sin)
    torch.testing.assert_close(rotated[..., 8:], x[..., 8:])
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    q, k = torch.randn(16), torch.randn(16)

    def score(pos_q: int, pos_k: int) -> torch.Tensor:
        cq, sq = rotary_tables(torch.tensor([pos_q]), 8, 10000.0, q.dtype)
        ck, sk = rotary_tables(torch.tensor([pos_k]), 8, 10000.0, k.dtype)
        return (apply_rotary(q[None], cq, sq) * apply_rotary(k[None], ck, sk)).sum()

    torch.testing.assert_close(score(7, 3), score(104, 100), atol=1e-4, rtol=1e-4)
    assert not torch.allclose(score(7, 3), score(7, 5))


def test_module_exposes_the_qk_clip_interface() -> None:
    attn = SlidingWindowAttention(unit_config())
    assert (attn.n_heads, attn.head_dim, attn.rotary_dim) == (4, 16, 8)
    assert isinstance(attn.q_proj, torch.nn.Linear) and attn.q_proj.weight.shape == (64, 64)
    assert attn.max_logit.shape == (4,)
    h = torch.randn(2, 30, 64)
    attn(h, torch.arange(30))
    assert torch.all(attn.max_logit == 0), "max_logit is only tracked when asked"
    attn.track_max_logit = True
    attn(h, torch.arange(30))
    q, k, _ = attn.project(h, torch.arange(30))
    torch.testing.assert_close(attn.max_logit, window_max_logit(q, k, attn.window))
    assert torch.all(attn.max_logit != 0)


def test_max_logit_head_rows_follow_q_proj_rows() -> None:
    """Scaling one head's q rows scales only that head's max logit (rows are grouped per head)."""
    attn = SlidingWindowAttention(unit_config())
    attn.track_max_logit = True
    h = torch.randn(1, 12, 64)
    attn(h, torch.arange(12))
    before = attn.max_logit.clone()
    with torch.no_grad():
        attn.q_proj.weight[16:32] *= 2.0
    attn(h, torch.arange(12))
    assert torch.allclose(attn.max_logit[[0, 2, 3]], before[[0, 2, 3]])
    assert not torch.allclose(attn.max_logit[1], before[1])


def test_cached_attention_equals_whole_sequence_attention() -> None:
    attn = SlidingWindowAttention(unit_config())
    h = torch.randn(2, 40, 64)
    full, _ = attn(h, torch.arange(40))
    out, past = attn(h[:, :9], torch.arange(9))
    keep = attn.window - 1
    past = (past[0][:, :, -keep:], past[1][:, :, -keep:])
    pieces = [out]
    for start, end in [(9, 10), (10, 17), (17, 40)]:
        out, past = attn.forward_cached(h[:, start:end], torch.arange(start, end), past, None)
        assert past[0].shape[2] <= keep
        pieces.append(out)
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_short_inputs_past_the_window_take_one_band_masked_call(monkeypatch) -> None:
    """Up to twice the window (and short), one SDPA call with an (n, n) band mask replaces the blocks."""
    seen = []
    real = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.append(None if attn_mask is None else tuple(attn_mask.shape))
        return real(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    q = k = v = torch.randn(2, 2, 30, 4)
    window_attention(q, k, v, 16)
    window_attention(q, k, v, 16, torch.ones(2, 30, dtype=torch.bool))
    assert seen == [(30, 30), (2, 1, 30, 30)]
