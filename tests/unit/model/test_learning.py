"""The training objective works end to end: overfit one batch, learn a simple synthetic language."""

from __future__ import annotations

import torch
from model_builders import build_model, random_ids

from agent_forge.model import ForgeForCausalLM


def counting_language(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Arithmetic progressions mod 40 (start and step 1..3 drawn per sequence), tokens 3..42."""
    start = torch.randint(0, 40, (batch, 1), generator=generator)
    step = torch.randint(1, 4, (batch, 1), generator=generator)
    return 3 + (start + step * torch.arange(length)) % 40


def train(model: ForgeForCausalLM, batches: list[torch.Tensor], lr: float) -> list[float]:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for ids in batches:
        out = model(ids, labels=ids)
        optimizer.zero_grad()
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(out.lm_loss.item())
    return losses


def heldout_loss(model: ForgeForCausalLM, ids: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return model(ids, labels=ids).lm_loss.item()


def test_overfits_one_batch() -> None:
    model = build_model(seed=0)
    ids = random_ids(4, 24)
    losses = train(model, [ids] * 120, lr=3e-3)
    assert losses[0] > 5.5
    assert losses[-1] < 0.3, f"final loss {losses[-1]:.3f}"


def test_learns_a_simple_language_and_its_heldout_loss_falls() -> None:
    model = build_model(seed=1)
    train_gen, heldout_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    heldout = counting_language(32, 40, heldout_gen)
    before = heldout_loss(model, heldout)
    train(model, [counting_language(16, 40, train_gen) for _ in range(80)], lr=3e-3)
    after = heldout_loss(model, heldout)
    assert after < 0.4 * before, f"held-out loss {before:.3f} -> {after:.3f}"
    with torch.no_grad():
        out = model.eval()(heldout)
    accuracy = (out.logits[:, 5:-1].argmax(-1) == heldout[:, 6:]).float().mean().item()
    assert accuracy > 0.5, f"next-token accuracy {accuracy:.2f}"
