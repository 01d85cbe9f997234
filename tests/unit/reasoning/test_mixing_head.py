"""The mixing head: starts near the base, mixes distributions exactly, learns, round-trips on disk."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from agent_forge.reasoning.mixing import MixingHead, mix_log_probs


def test_the_head_starts_trusting_the_base():
    torch.manual_seed(0)
    head = MixingHead(16)
    weight = head(torch.randn(3, 5, 16), torch.randn(3, 5, 16))
    assert weight.shape == (3, 5, 1)
    assert torch.allclose(weight, torch.full_like(weight, torch.sigmoid(torch.tensor(-2.0)).item()), atol=0.02)


def test_mixture_is_the_weighted_sum_of_the_two_distributions():
    generator = torch.Generator().manual_seed(1)
    base, thought = torch.randn(4, 11, generator=generator), torch.randn(4, 11, generator=generator)
    z = torch.randn(4, 1, generator=generator)
    w = torch.sigmoid(z)
    expected = w * F.softmax(thought, -1) + (1 - w) * F.softmax(base, -1)
    mixed = mix_log_probs(base, thought, z)
    torch.testing.assert_close(mixed.exp(), expected)
    torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(4))
    torch.testing.assert_close(mix_log_probs(base, thought, torch.full((4, 1), 60.0)), F.log_softmax(thought, -1))
    torch.testing.assert_close(mix_log_probs(base, thought, torch.full((4, 1), -60.0)), F.log_softmax(base, -1))


def test_every_head_parameter_gets_a_gradient_and_training_moves_the_weight():
    torch.manual_seed(2)
    head = MixingHead(8)
    base_h, thought_h = torch.randn(32, 8), torch.randn(32, 8)
    base_logits, thought_logits = torch.randn(32, 5), torch.randn(32, 5)
    target = thought_logits.argmax(-1)  # the thought is always right: the head should trust it more
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    start = float(head(base_h, thought_h).detach().mean())
    for step in range(30):
        mixed, _ = head.mix(base_logits, thought_logits, base_h, thought_h)
        loss = F.nll_loss(mixed, target)
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
        optimizer.step()
    assert float(head(base_h, thought_h).detach().mean()) > start + 0.3


def test_save_and_load_round_trip(tmp_path):
    torch.manual_seed(3)
    head = MixingHead(12, inner=7)
    head.save(tmp_path)
    loaded = MixingHead.load(tmp_path)
    x, y = torch.randn(2, 12), torch.randn(2, 12)
    torch.testing.assert_close(loaded(x, y), head(x, y))
    assert (tmp_path / "mixing_head.safetensors").exists() and loaded.inner == 7
