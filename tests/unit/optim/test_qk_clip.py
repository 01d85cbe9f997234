"""QK-clip on a small real rotary attention that follows the interface of docs/design/interfaces.md."""

from __future__ import annotations

import dataclasses
import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from agent_forge.optim import MuGrokConfig, MuonGrokfast, apply_qk_clip, build_optimizer, qk_clip_

TAU = 5.0


class RotaryAttention(nn.Module):
    """Causal multi-head attention; the first ``rotary_dim`` dims of each head get RoPE (rotate-half)."""

    def __init__(self, dim: int = 16, n_heads: int = 4, head_dim: int = 8, rotary_dim: int = 4) -> None:
        super().__init__()
        self.n_heads, self.head_dim, self.rotary_dim = n_heads, head_dim, rotary_dim
        self.q_proj = nn.Linear(dim, n_heads * head_dim)
        self.k_proj = nn.Linear(dim, n_heads * head_dim)
        self.v_proj = nn.Linear(dim, n_heads * head_dim)
        self.o_proj = nn.Linear(n_heads * head_dim, dim)
        self.register_buffer("max_logit", torch.zeros(n_heads))

    def _rotate(self, x: torch.Tensor) -> torch.Tensor:
        half = self.rotary_dim // 2
        positions = torch.arange(x.shape[-2], dtype=x.dtype)[:, None]
        angles = positions / 100.0 ** (torch.arange(half, dtype=x.dtype) / half)
        cos, sin = angles.cos(), angles.sin()
        first, second, rest = x[..., :half], x[..., half : self.rotary_dim], x[..., self.rotary_dim :]
        return torch.cat([first * cos - second * sin, first * sin + second * cos, rest], dim=-1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Masked pre-softmax logits, shape (batch, heads, T, T)."""
        batch, length, _ = x.shape
        q = self.q_proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        scores = self._rotate(q) @ self._rotate(k).transpose(-1, -2) / math.sqrt(self.head_dim)
        causal = torch.ones(length, length, dtype=torch.bool).tril()
        return scores.masked_fill(~causal, float("-inf"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scores = self.logits(x)
        self.max_logit.copy_(scores.detach().amax(dim=(0, 2, 3)))
        batch, length, _ = x.shape
        v = self.v_proj(x).view(batch, length, self.n_heads, self.head_dim).transpose(1, 2)
        mixed = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, -1)
        return self.o_proj(mixed)


class TinyModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(20, 16)
        self.attn = RotaryAttention()
        self.lm_head = nn.Linear(16, 20, bias=False)
        self.track_max_logit = False

    def attention_modules(self) -> list[RotaryAttention]:
        return [self.attn]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.attn(self.embed(ids)))


def _hot_attention(seed: int = 0) -> tuple[RotaryAttention, torch.Tensor]:
    """Heads 0 and 2 have logits far above TAU, heads 1 and 3 below it."""
    torch.manual_seed(seed)
    attention = RotaryAttention()
    with torch.no_grad():
        for head, factor in enumerate((4.0, 0.2, 3.0, 0.2)):
            rows = slice(head * 8, (head + 1) * 8)
            attention.q_proj.weight[rows] *= factor
            attention.k_proj.weight[rows] *= factor
    x = torch.randn(2, 12, 16, generator=torch.Generator().manual_seed(seed))
    attention(x)
    return attention, x


def _head_rows(weight: torch.Tensor, head: int, dims: slice) -> torch.Tensor:
    return weight.view(4, 8, -1)[head, dims]


def test_clip_bounds_every_head_and_hits_tau_exactly() -> None:
    attention, x = _hot_attention()
    before = attention.logits(x).amax(dim=(0, 2, 3))
    assert before[0] > TAU and before[2] > TAU and before[1] < TAU and before[3] < TAU
    count = qk_clip_(attention, TAU)
    after = attention.logits(x).amax(dim=(0, 2, 3))
    assert int(count) == 2
    assert (after <= TAU * (1 + 1e-5)).all(), after
    torch.testing.assert_close(after[[0, 2]], torch.full((2,), TAU), rtol=1e-5, atol=0)
    torch.testing.assert_close(
        attention.max_logit, torch.minimum(before, torch.tensor(TAU)), rtol=1e-5, atol=0
    )


def test_clip_splits_gamma_between_rotary_and_plain_rows() -> None:
    attention, _ = _hot_attention()
    gamma = TAU / attention.max_logit[0].item()
    q_before, k_before = attention.q_proj.weight.detach().clone(), attention.k_proj.weight.detach().clone()
    qb_before, kb_before = attention.q_proj.bias.detach().clone(), attention.k_proj.bias.detach().clone()
    qk_clip_(attention, TAU)
    rotary, plain = slice(0, 4), slice(4, 8)
    q_after, k_after = attention.q_proj.weight, attention.k_proj.weight
    for dims, q_factor, k_factor in ((rotary, gamma, 1.0), (plain, math.sqrt(gamma), math.sqrt(gamma))):
        torch.testing.assert_close(_head_rows(q_after, 0, dims), _head_rows(q_before, 0, dims) * q_factor)
        torch.testing.assert_close(_head_rows(k_after, 0, dims), _head_rows(k_before, 0, dims) * k_factor)
    torch.testing.assert_close(attention.q_proj.bias[:4], qb_before[:4] * gamma)
    torch.testing.assert_close(attention.k_proj.bias[4:8], kb_before[4:8] * math.sqrt(gamma))
    for head in range(4):
        assert torch.equal(_head_rows(k_after, head, rotary), _head_rows(k_before, head, rotary))
    assert torch.equal(attention.k_proj.bias.view(4, 8)[:, :4], kb_before.view(4, 8)[:, :4])
    for head in (1, 3):
        assert torch.equal(_head_rows(q_after, head, slice(0, 8)), _head_rows(q_before, head, slice(0, 8)))
        assert torch.equal(_head_rows(k_after, head, slice(0, 8)), _head_rows(k_before, head, slice(0, 8)))


def test_nothing_changes_below_tau() -> None:
    attention, _ = _hot_attention()
    state = {k: v.clone() for k, v in attention.state_dict().items()}
    count = apply_qk_clip([attention], tau=1e6)
    assert int(count) == 0
    assert all(torch.equal(state[k], v) for k, v in attention.state_dict().items())


def test_second_clip_without_forward_is_a_no_op() -> None:
    attention, _ = _hot_attention()
    qk_clip_(attention, TAU)
    weights = attention.q_proj.weight.detach().clone()
    assert int(qk_clip_(attention, TAU)) == 0
    assert torch.equal(attention.q_proj.weight, weights)


def test_optimizer_step_clips_and_reports_count() -> None:
    """A step with no gradients is the clip alone, so the bound is exact on the same input."""
    torch.manual_seed(0)
    model = TinyModel()
    hot, x = _hot_attention()
    model.attn.load_state_dict(hot.state_dict())
    config = dataclasses.replace(MuGrokConfig.from_phase(1), qk_clip_tau=TAU)
    optimizer = build_optimizer(model, config)
    assert model.track_max_logit is True and optimizer.qk_clip_modules == [model.attn]
    assert optimizer.last_qk_clip_count == 0
    optimizer.step()
    assert optimizer.last_qk_clip_count == 2
    assert model.attn.logits(x).amax() <= TAU * (1 + 1e-5)


def test_clip_runs_after_a_real_update() -> None:
    torch.manual_seed(0)
    model = TinyModel()
    hot, _ = _hot_attention()
    model.attn.load_state_dict(hot.state_dict())
    optimizer = build_optimizer(model, dataclasses.replace(MuGrokConfig.from_phase(3), qk_clip_tau=TAU))
    ids = torch.randint(0, 20, (2, 12), generator=torch.Generator().manual_seed(1))
    logits = model(ids)
    nn.functional.cross_entropy(logits.view(-1, 20), ids.view(-1)).backward()
    measured = model.attn.max_logit.clone()
    optimizer.step()
    assert optimizer.last_qk_clip_count == int((measured > TAU).sum()) > 0
    assert model.attn.max_logit.max() <= TAU * (1 + 1e-5)


def test_tau_none_or_empty_module_list_switches_clip_off() -> None:
    model = TinyModel()
    hot, _ = _hot_attention()
    model.attn.load_state_dict(hot.state_dict())
    for optimizer in (
        build_optimizer(model, dataclasses.replace(MuGrokConfig(), qk_clip_tau=None)),
        build_optimizer(model, MuGrokConfig(qk_clip_tau=TAU), qk_clip_modules=[]),
    ):
        weights = model.attn.q_proj.weight.detach().clone()
        optimizer.step()
        assert optimizer.last_qk_clip_count == 0 and torch.equal(model.attn.q_proj.weight, weights)


def test_module_breaking_the_interface_is_refused() -> None:
    attention = RotaryAttention()
    attention.head_dim = 6
    with pytest.raises(ValueError, match="n_heads\\*head_dim"):
        MuonGrokfast(attention.named_parameters(), MuGrokConfig(), qk_clip_modules=[attention])


def _rank_worker(rank: int, world: int, init_file: str, result_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    attention, _ = _hot_attention(seed=0)
    attention.max_logit.zero_()
    attention.max_logit[rank] = 50.0
    count = apply_qk_clip([attention], TAU)
    torch.save(
        {"count": count, "q": attention.q_proj.weight.detach(), "k": attention.k_proj.weight.detach()},
        os.path.join(result_dir, f"rank{rank}.pt"),
    )
    dist.destroy_process_group()


def test_ranks_with_different_logits_clip_identically() -> None:
    """Rank 0 saw head 0 run hot, rank 1 head 1: both must clip both heads and end with equal weights."""
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_rank_worker, args=(2, os.path.join(folder, "init"), folder), nprocs=2, join=True)
        results = [torch.load(os.path.join(folder, f"rank{r}.pt"), weights_only=True) for r in range(2)]
    assert int(results[0]["count"]) == int(results[1]["count"]) == 2
    assert torch.equal(results[0]["q"], results[1]["q"]) and torch.equal(results[0]["k"], results[1]["k"])
