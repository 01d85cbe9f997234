"""Tiny real models for the model tests (no mocks): the `smoke` shape, seeded.

A plain module (not conftest.py): `from conftest import ...` would resolve to tests/conftest.py.
"""

from __future__ import annotations

import torch

from agent_forge.model import ForgeForCausalLM
from support.shapes import unit_config


def build_model(seed: int = 0, **overrides: object) -> ForgeForCausalLM:
    """A seeded smoke-shape model (d 64, 2 layers, vocab 512, window 16, memory chunk 8)."""
    torch.manual_seed(seed)
    return ForgeForCausalLM(unit_config(**overrides))


def random_ids(batch: int, length: int, vocab: int = 512, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, vocab, (batch, length), generator=generator)
