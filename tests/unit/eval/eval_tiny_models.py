"""Tiny real causal LMs for the evaluation tests (a small Llama, a bigram table) and a training loop."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.data.dataset import BatchStream, PackedDataset


def tiny_llama(vocab_size: int, seed: int = 0, hidden: int = 64, layers: int = 2) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=2 * hidden, max_position_embeddings=512,
        tie_word_embeddings=True, pad_token_id=0, bos_token_id=1, eos_token_id=2,
    )  # fmt: skip
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


class BigramLM(nn.Module):
    """A real, if simple, causal LM: the next-token distribution depends only on the current token."""

    def __init__(self, vocab_size: int, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.table = nn.Embedding(vocab_size, vocab_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table(input_ids))


def train_steps(model: nn.Module, dataset: PackedDataset, steps: int, lr: float = 3e-3) -> None:
    """Plain next-token training: enough to move a tiny model off its random start."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    stream = BatchStream(dataset)
    for _ in range(steps):
        batch = next(stream)
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
