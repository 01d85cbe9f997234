"""Band attention from mask-free flash calls: exact against the masked reference, gradients included."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.model.attention import window_attention
from agent_forge.model.band_attention import BandAttention, band_attention_usable, band_plan


def reference(q, k, v, window):
    i = torch.arange(q.shape[2])
    allowed = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < window)
    scores = (q @ k.transpose(-1, -2)) / q.shape[-1] ** 0.5
    return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v


@settings(max_examples=25, deadline=None)
@given(length=st.integers(2, 90), window=st.integers(1, 40), seed=st.integers(0, 2**16))
def test_the_plan_covers_each_query_window_exactly_once(length, window, seed) -> None:
    """Every query's parts together are exactly its keys i - w < j <= i, none twice."""
    for s, e, parts in band_plan(length, window):
        for a in range(e - s):
            query, seen = s + a, []
            for part in parts:
                keys = range(part.start, part.end)
                if part.kind == "causal":
                    seen += [j for j in keys if j <= query]
                elif part.kind == "full":
                    seen += list(keys)
                elif a < e - s - 1:
                    seen += [j for j in keys if j - part.start >= a]
            assert sorted(seen) == list(range(max(0, query - window + 1), query + 1))


@pytest.mark.parametrize(("length", "window"), [(300, 64), (301, 100), (129, 64), (257, 256), (70, 7)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_output_and_gradients_equal_the_masked_reference(length, window, dtype) -> None:
    gen = torch.Generator().manual_seed(length)
    base = [torch.randn(2, length, 3, 8, generator=gen, dtype=dtype).transpose(1, 2) for _ in range(3)]
    grad_out = torch.randn(2, 3, length, 8, generator=gen, dtype=dtype)
    ours = [t.clone().requires_grad_() for t in base]
    theirs = [t.clone().requires_grad_() for t in base]
    out = BandAttention.apply(*ours, window)
    expected = reference(*theirs, window)
    out.backward(grad_out)
    expected.backward(grad_out)
    tol = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 1e-10, "rtol": 1e-10}
    torch.testing.assert_close(out, expected, **tol)
    for mine, want in zip(ours, theirs, strict=True):
        torch.testing.assert_close(mine.grad, want.grad, **tol)


def test_bf16_stays_within_bf16_rounding_of_the_float64_reference() -> None:
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(1, 2, 600, 16, generator=gen) for _ in range(3))
    out = BandAttention.apply(q.bfloat16(), k.bfloat16(), v.bfloat16(), 200).double()
    expected = reference(q.double(), k.double(), v.double(), 200)
    assert (out - expected).abs().max() < 2e-2


def test_long_unpadded_cpu_inputs_take_the_band_path_and_padded_ones_do_not(monkeypatch) -> None:
    calls = []
    real = BandAttention.apply
    monkeypatch.setattr(BandAttention, "apply", lambda *args: calls.append(args[-1]) or real(*args))
    q = k = v = torch.randn(1, 2, 300, 4)
    window_attention(q, k, v, 64)
    window_attention(q, k, v, 64, torch.ones(1, 300, dtype=torch.bool))
    assert calls == [64]
    assert band_attention_usable(q, None) and not band_attention_usable(q, torch.ones(1, 300, dtype=torch.bool))
