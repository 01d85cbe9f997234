"""Real small parts for the reasoning tests: a seeded smoke model and a tokenizer trained on reasoning text.

A plain module (not conftest.py), imported by the test files of this folder.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from agent_forge.data.tasks import training_text
from agent_forge.data.tokenizer import ForgeTokenizer, train_tokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.reasoning.data import encode_reasoning, reasoning_dataset
from support.shapes import unit_config


def smoke_model(seed: int = 0, **overrides: object) -> ForgeForCausalLM:
    """A seeded smoke-shape model; mem_chunk 64 by default so no stream crosses a memory boundary."""
    torch.manual_seed(seed)
    settings = {"mem_chunk": 64, **overrides}
    return ForgeForCausalLM(unit_config(**settings))


@lru_cache(maxsize=1)
def reasoning_tokenizer() -> ForgeTokenizer:
    """A 512-token BPE trained on reasoning texts and plain task texts."""
    examples = reasoning_dataset(420, seed=11)
    texts = [e.text for e in examples] + [training_text(e.task) for e in examples]
    return train_tokenizer(texts, 512)


def model_taught(examples: list, steps: int) -> ForgeForCausalLM:
    """A seeded smoke model trained (AdamW, full batch) on the reasoning ``examples`` until it writes them."""
    encoded = encode_reasoning(reasoning_tokenizer(), examples)
    return model_fit([e.tokens for e in encoded], [e.tokens for e in encoded], steps)


def model_fit(rows: list[list[int]], row_labels: list[list[int]], steps: int) -> ForgeForCausalLM:
    """A seeded smoke model trained (AdamW, full batch) on token rows with their labels (-100: unscored)."""
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for row, (tokens, scored) in enumerate(zip(rows, row_labels, strict=True)):
        ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, : len(scored)] = torch.tensor(scored)
    model = smoke_model(0).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = model(input_ids=ids, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()
