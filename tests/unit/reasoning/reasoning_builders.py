"""Real small parts for the reasoning tests: a seeded smoke model and a tokenizer trained on reasoning text.

A plain module (not conftest.py), imported by the test files of this folder.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from agent_forge.data.tasks import training_text
from agent_forge.data.tokenizer import ForgeTokenizer, train_tokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.reasoning.data import reasoning_dataset
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
