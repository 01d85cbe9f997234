"""The training objective works end to end (D10): overfit one batch, learn a simple synthetic language, and
lower the held-out loss on the built-in reasoning tasks with the project's own tokenizer."""

from __future__ import annotations

import torch
from model_builders import build_model, random_ids

from agent_forge.data.dataset import encode_examples, pack_tokens
from agent_forge.data.tasks import generate_tasks, training_text
from agent_forge.data.tokenizer import train_tokenizer
from agent_forge.model import ForgeForCausalLM


def counting_language(batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Arithmetic progressions mod 40 (start and step 1..3 drawn per sequence), tokens 3..42."""
    start = torch.randint(0, 40, (batch, 1), generator=generator)
    step = torch.randint(1, 4, (batch, 1), generator=generator)
    return 3 + (start + step * torch.arange(length)) % 40


def train(model: ForgeForCausalLM, batches: list[torch.Tensor], lr: float) -> list[float]:
    """AdamW on the full objective (deep supervision, ACT with its EMA teacher, gate entropy)."""
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
    ids = random_ids(2, 24)
    losses = train(model, [ids] * 50, lr=1e-2)
    assert losses[0] > 5.5
    assert losses[-1] < 0.1, f"final loss {losses[-1]:.3f}"
    assert heldout_loss(model, ids) < 0.1, "the inference path (early-exit halting) has overfit too"


def test_learns_a_simple_language_and_its_heldout_loss_falls() -> None:
    model = build_model(seed=1)
    train_gen, heldout_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    heldout = counting_language(32, 40, heldout_gen)
    before = heldout_loss(model, heldout)
    train(model, [counting_language(8, 40, train_gen) for _ in range(40)], lr=6e-3)
    after = heldout_loss(model, heldout)
    assert after < 0.4 * before, f"held-out loss {before:.3f} -> {after:.3f}"
    with torch.no_grad():
        out = model.eval()(heldout)
    accuracy = (out.logits[:, 5:-1].argmax(-1) == heldout[:, 6:]).float().mean().item()
    assert accuracy > 0.5, f"next-token accuracy {accuracy:.2f}"


def test_heldout_loss_on_reasoning_tasks_falls() -> None:
    """Arithmetic word problems (D4), tokenizer trained on the training split only; the held-out split is
    disjoint by hash, so a falling held-out loss is learning, not memorising."""
    train_examples = generate_tasks("arith", 1, 200, seed=0)
    heldout_examples = generate_tasks("arith", 1, 32, seed=0, split="heldout")
    assert not {e.uid for e in train_examples} & {e.uid for e in heldout_examples}
    tokenizer = train_tokenizer([training_text(e) for e in train_examples], vocab_size=512)
    rows = pack_tokens(encode_examples(tokenizer, train_examples), 48)
    heldout = pack_tokens(encode_examples(tokenizer, heldout_examples), 48)
    model = build_model(seed=2, vocab_size=tokenizer.vocab_size)
    before = heldout_loss(model, heldout)
    order = torch.Generator().manual_seed(0)
    batches = [rows[torch.randint(0, rows.shape[0], (8,), generator=order)] for _ in range(40)]
    losses = train(model, batches, lr=3e-3)
    after = heldout_loss(model, heldout)
    assert losses[-1] < 0.6 * losses[0]
    assert after < 0.6 * before, f"held-out loss {before:.3f} -> {after:.3f}"
