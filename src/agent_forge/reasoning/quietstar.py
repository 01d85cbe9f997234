"""Quiet-STaR training (Zelikman et al. 2024) as one module: the LM, its mixing head, the objective.

At sampled positions of each sequence, n thoughts are sampled in parallel (``thoughts``). Each predicts
the next k true tokens through the mixing head; the objective is
- the NLL of the mixed predictions (teaches the model to use thoughts and the head how much to trust them);
- REINFORCE on the thought tokens with reward = the thought's log-likelihood of the true tokens minus the
  mean over the n thoughts at the same position (the baseline);
- ``kl_coeff`` x KL(model || frozen reference) of the plain next-token distributions (D11: 0.1).
``forward`` returns the loss, so ``DistributedDataParallel`` can wrap the whole module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.model import ForgeForCausalLM
from agent_forge.reasoning.mixing import MixingHead
from agent_forge.reasoning.thoughts import (
    ThoughtConfig,
    base_predictions,
    expand_anchors,
    sample_anchors,
    sample_thoughts,
    score_thoughts,
    true_next_tokens,
)


@dataclass(frozen=True)
class QuietStarSettings:
    num_thoughts: int = 4
    thought_len: int = 8
    lookahead: int = 4
    kl_coeff: float = 0.1
    positive_only: bool = False

    @property
    def thought(self) -> ThoughtConfig:
        return ThoughtConfig(self.num_thoughts, self.thought_len)


def thought_rewards(thought_ll: torch.Tensor) -> torch.Tensor:
    """(G, n) log-likelihoods of the true tokens -> reward against the mean of the n thoughts (no grad)."""
    thought_ll = thought_ll.detach()
    return thought_ll - thought_ll.mean(dim=-1, keepdim=True)


def reinforce_loss(
    policy_logp: torch.Tensor, rewards: torch.Tensor, positive_only: bool = False
) -> torch.Tensor:
    """-E[r * log pi(thought)]; with ``positive_only`` only better-than-average thoughts are reinforced."""
    rewards = rewards.detach().clamp_min(0.0) if positive_only else rewards.detach()
    return -(rewards * policy_logp).mean()


def kl_to_reference(logits: torch.Tensor, reference_logits: torch.Tensor) -> torch.Tensor:
    """Mean over positions of KL(p_model || p_reference) of next-token distributions."""
    logp = F.log_softmax(logits.float(), dim=-1)
    ref = F.log_softmax(reference_logits.float(), dim=-1)
    return (logp.exp() * (logp - ref)).sum(-1).mean()


@dataclass
class ThoughtPredictions:
    """Per stream (b, p, thought): mixed and plain log-likelihood of the k true tokens, and more."""

    mixed_ll: torch.Tensor  # (S, k)
    base_ll: torch.Tensor  # (S, k)
    policy_logp: torch.Tensor  # (S,)
    weight: torch.Tensor  # (S, k, 1)
    mixed_correct: torch.Tensor  # (S, k) argmax of the mixture is the true token
    base_correct: torch.Tensor  # (S, k)
    thoughts: torch.Tensor  # (S, L)
    prefix_logits: torch.Tensor  # (B, N, V)


class QuietStarModel(nn.Module):
    """A causal LM plus its mixing head; ``forward`` is the Quiet-STaR training objective."""

    def __init__(self, lm: ForgeForCausalLM, mixer: MixingHead, settings: QuietStarSettings) -> None:
        super().__init__()
        self.lm, self.mixer, self.settings = lm, mixer, settings

    def attention_modules(self) -> list[nn.Module]:
        return self.lm.attention_modules()

    @property
    def track_max_logit(self) -> bool:
        return self.lm.track_max_logit

    @track_max_logit.setter
    def track_max_logit(self, value: bool) -> None:
        self.lm.track_max_logit = value

    def predict(
        self,
        ids: torch.Tensor,
        anchors: torch.Tensor,
        generator: torch.Generator | None,
        attention_mask: torch.Tensor | None = None,
    ) -> ThoughtPredictions:
        """Thoughts at ``anchors`` (B, P) and the predictions of the next k tokens with and without them."""
        cfg, k = self.settings.thought, self.settings.lookahead
        state = self.lm.prefix_state(ids, attention_mask)
        batch_index, anchor_pos = expand_anchors(anchors, cfg.num_thoughts)
        thoughts = sample_thoughts(self.lm, state, batch_index, anchor_pos, cfg, generator)
        true = true_next_tokens(ids, batch_index, anchor_pos, k)
        scores = score_thoughts(self.lm, state, batch_index, anchor_pos, thoughts, true, cfg)
        base_logits, base_hidden = base_predictions(state, batch_index, anchor_pos, k)
        mixed, weight = self.mixer.mix(base_logits, scores.talk_logits, base_hidden, scores.talk_hidden)
        base = F.log_softmax(base_logits.float(), dim=-1)
        index = true.unsqueeze(-1)
        return ThoughtPredictions(
            mixed.gather(-1, index).squeeze(-1),
            base.gather(-1, index).squeeze(-1),
            scores.policy_logp,
            weight,
            mixed.argmax(-1) == true,
            base.argmax(-1) == true,
            thoughts,
            state.logits,
        )

    def forward(
        self,
        ids: torch.Tensor,
        anchors: torch.Tensor,
        seed: torch.Tensor,
        reference_logits: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one batch and its figures; ``seed`` fixes the sampled thoughts (exact resume)."""
        generator = torch.Generator(device=ids.device).manual_seed(int(seed.reshape(-1)[0]))
        pred = self.predict(ids, anchors, generator)
        n = self.settings.num_thoughts
        thought_ll = pred.mixed_ll.sum(-1).view(-1, n)
        rewards = thought_rewards(thought_ll)
        nll = -pred.mixed_ll.mean()
        policy = reinforce_loss(pred.policy_logp.view(-1, n), rewards, self.settings.positive_only)
        kl = (
            kl_to_reference(pred.prefix_logits, reference_logits) if reference_logits is not None else nll * 0
        )
        loss = nll + policy + self.settings.kl_coeff * kl
        metrics = {
            "mixed_nll": float(nll.detach()),
            "base_nll": float(-pred.base_ll.detach().mean()),
            "ll_gain": float((pred.mixed_ll - pred.base_ll).detach().mean()),
            "reinforce": float(policy.detach()),
            "reward_std": float(rewards.std()),
            "mix_weight": float(pred.weight.detach().mean()),
            "kl": float(kl.detach()),
            "thought_logp_per_token": float(pred.policy_logp.detach().mean()) / self.settings.thought_len,
        }
        return loss, metrics


@torch.no_grad()
def quietstar_figures(
    policy: QuietStarModel, rows: torch.Tensor, positions: int, seed: int
) -> dict[str, float]:
    """Held-out effect of internal thoughts: log-likelihood gain and next-token accuracy with/without."""
    was_training = policy.training
    policy.eval()
    try:
        anchors = sample_anchors(
            rows.shape[1],
            rows.shape[0],
            positions,
            policy.settings.lookahead,
            torch.Generator().manual_seed(seed),
            rows.device,
        )
        generator = torch.Generator(device=rows.device).manual_seed(seed)
        pred = policy.predict(rows, anchors, generator)
    finally:
        policy.train(was_training)
    gain = pred.mixed_ll - pred.base_ll
    return {
        "qs_ll_gain": float(gain.mean()),
        "qs_gain_positive_share": float((gain.sum(-1) > 0).float().mean()),
        "qs_accuracy_with_thoughts": float(pred.mixed_correct.float().mean()),
        "qs_accuracy_without_thoughts": float(pred.base_correct.float().mean()),
        "qs_mix_weight": float(pred.weight.mean()),
        "qs_streams": float(len(pred.thoughts)),
    }
