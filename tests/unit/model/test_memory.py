"""Titans memory: closed-form surprise gradient against autograd, the recurrence against a plain loop,
causal reads, per-sequence state, and chunk-by-chunk continuation."""

from __future__ import annotations

import pytest
import torch

from agent_forge.model.memory import (
    FactorizedMemory,
    MemoryConstants,
    MemoryState,
    chunk_statistics,
    memory_recurrence,
    surprise_gradient,
)
from support.shapes import unit_config

CONST = MemoryConstants(alpha=0.05, eta=0.6, theta=0.08)


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def reference_memory(k, v, q, chunk, const):
    """Token loop: reads use M before the token's chunk; the update uses autograd for grad_M."""
    batch, length, d = k.shape
    memory, momentum = torch.zeros(batch, d, d), torch.zeros(batch, d, d)
    reads = torch.zeros(batch, length, d)
    for c0 in range(0, length, chunk):
        c1 = min(c0 + chunk, length)
        reads[:, c0:c1] = q[:, c0:c1] @ memory.transpose(-1, -2)
        if c1 - c0 < chunk:
            break
        m = memory.clone().requires_grad_(True)
        loss = ((m @ k[:, c0:c1].transpose(-1, -2) - v[:, c0:c1].transpose(-1, -2)) ** 2).sum()
        (grad,) = torch.autograd.grad(loss, m)
        momentum = const.eta * momentum - const.theta * grad
        memory = (1 - const.alpha) * memory + momentum
    return reads, memory


@pytest.mark.parametrize("chunk", [1, 3, 8])
def test_closed_form_gradient_equals_autograd(chunk: int) -> None:
    gen = torch.Generator().manual_seed(chunk)
    k, v = unit(torch.randn(2, chunk, 6, generator=gen)), torch.randn(2, chunk, 6, generator=gen)
    memory = torch.randn(2, 6, 6, generator=gen).requires_grad_(True)
    loss = ((memory @ k.transpose(-1, -2) - v.transpose(-1, -2)) ** 2).sum()
    (expected,) = torch.autograd.grad(loss, memory)
    kk, vk = chunk_statistics(k, v, chunk)
    torch.testing.assert_close(surprise_gradient(memory.detach(), kk[:, 0], vk[:, 0]), expected)


@pytest.mark.parametrize(("length", "chunk"), [(32, 8), (29, 8), (5, 8), (12, 1)])
def test_recurrence_matches_the_plain_titans_loop(length: int, chunk: int) -> None:
    gen = torch.Generator().manual_seed(length)
    k, q = unit(torch.randn(2, length, 6, generator=gen)), unit(torch.randn(2, length, 6, generator=gen))
    v = torch.randn(2, length, 6, generator=gen)
    reads, state, boundaries = memory_recurrence(k, v, q, MemoryState.zeros(2, 6, k.device), 0, chunk, CONST)
    expected_reads, expected_memory = reference_memory(k, v, q, chunk, CONST)
    torch.testing.assert_close(reads, expected_reads, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(state.memory, expected_memory, atol=1e-5, rtol=1e-5)
    assert boundaries.shape == (2, length // chunk + 1, 6, 6)
    assert torch.all(boundaries[:, 0] == 0), "memory starts at zero for every sequence"


def test_segments_continue_exactly_where_the_whole_sequence_would() -> None:
    gen = torch.Generator().manual_seed(3)
    k, q = unit(torch.randn(1, 45, 6, generator=gen)), unit(torch.randn(1, 45, 6, generator=gen))
    v = torch.randn(1, 45, 6, generator=gen)
    whole, whole_state, _ = memory_recurrence(k, v, q, MemoryState.zeros(1, 6, k.device), 0, 8, CONST)
    state, pieces = MemoryState.zeros(1, 6, k.device), []
    for start, end in [(0, 5), (5, 6), (6, 16), (16, 17), (17, 45)]:
        reads, state, _ = memory_recurrence(
            k[:, start:end], v[:, start:end], q[:, start:end], state, start, 8, CONST
        )
        pieces.append(reads)
    torch.testing.assert_close(torch.cat(pieces, dim=1), whole, atol=1e-5, rtol=1e-5)
    for got, want in zip(state.tensors(), whole_state.tensors(), strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_reads_never_see_the_current_or_later_chunks() -> None:
    gen = torch.Generator().manual_seed(4)
    k, q = unit(torch.randn(1, 40, 6, generator=gen)), unit(torch.randn(1, 40, 6, generator=gen))
    v = torch.randn(1, 40, 6, generator=gen)
    base, _, _ = memory_recurrence(k, v, q, MemoryState.zeros(1, 6, k.device), 0, 8, CONST)
    v2 = v.clone()
    v2[:, 21] += 5.0  # chunk 2 (positions 16..23)
    changed, _, _ = memory_recurrence(k, v2, q, MemoryState.zeros(1, 6, k.device), 0, 8, CONST)
    torch.testing.assert_close(changed[:, :24], base[:, :24])
    assert not torch.allclose(changed[:, 24:], base[:, 24:])


def test_padding_tokens_write_nothing() -> None:
    torch.manual_seed(0)
    memory = FactorizedMemory(unit_config())
    h = torch.randn(1, 24, 64)
    valid = torch.ones(1, 24, dtype=torch.bool)
    valid[0, 3:7] = False
    out, state, _ = memory(h, None, 0, valid)
    h2 = h.clone()
    h2[0, 3:7] = torch.randn(4, 64)
    out2, state2, _ = memory(h2, None, 0, valid)
    torch.testing.assert_close(state.memory, state2.memory)
    torch.testing.assert_close(out[0, 7:], out2[0, 7:])


def test_memory_module_uses_the_configured_constants_and_runs_in_float32_under_autocast() -> None:
    config = unit_config(surprise_weight=0.7, novelty_weight=0.3, mem_capacity=2048)
    memory = FactorizedMemory(config)
    assert memory.const == MemoryConstants(config.mem_alpha, 0.3, 0.7 / 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, state, _ = memory(torch.randn(2, 20, 64), None, 0)
    assert state.memory.dtype == torch.float32 and torch.isfinite(out).all()
