"""The prompt-baking objective (Bhargava et al. 2024): token-level KL(P(. | u, x) || P_theta(. | x)).

The teacher is the frozen model reading the prompt ``u``; the student reads the same text without it.
Both distributions are compared at every scored position of the continuation, the KL is summed over
the vocabulary and averaged over scored tokens. Teacher log-probabilities are an input, so a bake
computes them once and a test can compare this function with a direct computation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def per_token_kl(teacher_logprobs: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) at each position: ``sum_v p_t(v) (log p_t(v) - log p_s(v))``, shape (...,)."""
    student = F.log_softmax(student_logits.float(), dim=-1)
    teacher = teacher_logprobs.float()
    probs = teacher.exp()
    terms = torch.where(probs > 0, probs * (teacher - student), torch.zeros_like(probs))
    return terms.sum(dim=-1)


def token_kl(teacher_logprobs: torch.Tensor, student_logits: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
    """Mean KL over the positions where ``mask`` is set (the loss a bake minimises)."""
    weights = mask.to(torch.float32)
    return (per_token_kl(teacher_logprobs, student_logits) * weights).sum() / weights.sum().clamp_min(1.0)
