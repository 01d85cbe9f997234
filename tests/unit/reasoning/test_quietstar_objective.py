"""The Quiet-STaR objective: baseline rewards, REINFORCE gradient, KL, and the whole module learning."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from reasoning_builders import smoke_model

from agent_forge.reasoning.mixing import MixingHead
from agent_forge.reasoning.quietstar import (
    QuietStarModel,
    QuietStarSettings,
    kl_to_reference,
    quietstar_figures,
    reinforce_loss,
    thought_rewards,
)
from agent_forge.reasoning.thoughts import sample_anchors


def test_rewards_are_the_gain_over_the_mean_of_the_thoughts_at_one_position():
    ll = torch.tensor([[-1.0, -3.0, -2.0], [0.0, 0.0, -6.0]], requires_grad=True)
    rewards = thought_rewards(ll)
    torch.testing.assert_close(rewards, torch.tensor([[1.0, -1.0, 0.0], [2.0, 2.0, -4.0]]))
    assert not rewards.requires_grad
    torch.testing.assert_close(rewards.sum(-1), torch.zeros(2))


def test_reinforce_gradient_is_minus_reward_over_count():
    logp = torch.zeros(2, 2, requires_grad=True)
    rewards = torch.tensor([[1.0, -1.0], [0.5, -0.5]])
    reinforce_loss(logp, rewards).backward()
    torch.testing.assert_close(logp.grad, -rewards / 4)
    logp.grad = None
    reinforce_loss(logp, rewards, positive_only=True).backward()
    torch.testing.assert_close(logp.grad, -rewards.clamp_min(0) / 4)


def test_kl_to_reference_is_zero_for_itself_and_matches_the_definition():
    generator = torch.Generator().manual_seed(0)
    logits, ref = torch.randn(2, 5, 7, generator=generator), torch.randn(2, 5, 7, generator=generator)
    assert float(kl_to_reference(logits, logits)) == 0.0
    expected = F.kl_div(F.log_softmax(ref, -1), F.log_softmax(logits, -1), log_target=True, reduction="none")
    torch.testing.assert_close(kl_to_reference(logits, ref), expected.sum(-1).mean())
    assert float(kl_to_reference(logits, ref)) > 0


def build(seed: int = 0, **settings):
    lm = smoke_model(seed, mem_chunk=16).train()
    config = {"num_thoughts": 2, "thought_len": 3, "lookahead": 2, **settings}
    return QuietStarModel(lm, MixingHead(lm.config.hidden_size), QuietStarSettings(**config))


def batch(seed: int = 0):
    ids = torch.randint(24, 512, (2, 32), generator=torch.Generator().manual_seed(seed))
    anchors = sample_anchors(32, 2, 3, 2, torch.Generator().manual_seed(seed))
    return ids, anchors, torch.tensor([seed])


def test_the_objective_is_finite_reproducible_and_reaches_the_lm_and_the_head():
    policy = build(1)
    ids, anchors, seed = batch(1)
    reference = policy.lm(ids).logits.detach() + 0.5 * torch.randn(2, 32, 512)
    loss, figures = policy(ids, anchors, seed, reference)
    again, _ = policy(ids, anchors, seed, reference)
    assert torch.isfinite(loss) and float(loss.detach()) == float(again.detach())
    assert figures["kl"] > 0 and 0.0 < figures["mix_weight"] < 1.0
    loss.backward()
    for name in ("mixer.proj.weight", "mixer.out.weight", "lm.model.embed_tokens.weight"):
        grad = dict(policy.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_training_the_module_lowers_the_mixed_nll_on_a_fixed_batch():
    policy = build(2, kl_coeff=0.0)
    ids, anchors, seed = batch(2)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=5e-3)
    first = None
    for _ in range(8):
        loss, figures = policy(ids, anchors, seed)
        first = figures["mixed_nll"] if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert figures["mixed_nll"] < first - 0.5


def test_held_out_figures_compare_with_and_without_thoughts():
    policy = build(3)
    ids, _, _ = batch(3)
    figures = quietstar_figures(policy, ids, positions=4, seed=0)
    assert figures["qs_streams"] == 2 * 4 * 2
    assert 0.0 <= figures["qs_accuracy_with_thoughts"] <= 1.0 and policy.training
    assert abs(figures["qs_ll_gain"]) < 1.0  # the head starts near the base: mixing changes little
