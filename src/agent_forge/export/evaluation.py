"""Score the numpy runtime with the project's own held-out evaluation (D6 for the exported model).

``eval.evaluate`` calls ``model(input_ids=..., attention_mask=...)`` on right-padded batches and reads
logits; ``RuntimeLM`` answers that call with one batched runtime forward. Padding only ever comes after a
row's real tokens, and the model is causal (attention, chunked memory, position-wise recursion), so the
logits at real positions are those of the row alone; the padded positions are never scored.

Called with ``use_cache=True`` (as the decoding engine, ``agent_forge.engine.decode``, calls a model) it
feeds the new tokens through the runtime's own cache instead, so the engine's sampling, insert hooks and
stop rules drive a bundle exactly as they drive a torch model (``agent-forge serve BUNDLE``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from agent_forge.export.runtime import Cache, ForgeRuntimeModel, RuntimeConfig
from agent_forge.export.runtime.bundle import greedy_generate
from agent_forge.export.runtime.model import LayerCache


class RuntimeCache:
    """The runtime's decoding cache as the engine handles it. ``batch_select_indices`` keeps some rows in
    new arrays, so selecting on a shallow copy (what the engine does) leaves the original untouched."""

    def __init__(self, inner: Cache) -> None:
        self.inner = inner

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        rows = indices.cpu().numpy()
        layers = [LayerCache(layer.keys[rows], layer.values[rows],
                             dataclasses.replace(layer.memory, **{f.name: getattr(layer.memory, f.name)[rows]
                                                                   for f in dataclasses.fields(layer.memory)}))
                  for layer in self.inner.layers]
        self.inner = Cache(layers, self.inner.seen)


@dataclass
class RuntimeStep:
    """One cached call: the logits of the last new position, (B, 1, V), and the cache to continue from."""

    logits: torch.Tensor
    cache: RuntimeCache


class RuntimeLM(nn.Module):
    """An ``nn.Module`` face for ``ForgeRuntimeModel`` (no parameters; logits as a torch tensor)."""

    def __init__(self, runtime: ForgeRuntimeModel) -> None:
        super().__init__()
        self.runtime = runtime

    @property
    def config(self) -> RuntimeConfig:
        """The runtime's settings (the engine reads ``mem_chunk`` to group prompts)."""
        return self.runtime.config

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                use_cache: bool | None = None, cache: RuntimeCache | None = None,
                **kwargs: Any) -> torch.Tensor | RuntimeStep:
        if use_cache or cache is not None:
            return self.step(input_ids, attention_mask, cache)
        ids = input_ids.cpu().numpy()
        if attention_mask is not None:
            mask = attention_mask.cpu().numpy().astype(bool)
            if (mask[:, 1:] & ~mask[:, :-1]).any():
                raise ValueError("RuntimeLM takes right-padded batches only")
        logits, _ = self.runtime.forward(ids)
        return torch.from_numpy(np.ascontiguousarray(logits))

    def step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
             cache: RuntimeCache | None) -> RuntimeStep:
        """Feed new tokens (B, L) through the cache; only the last position's logits are computed (what
        decoding reads: the recursion runs per position, so the prompt's other positions are skipped)."""
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("the runtime decodes unpadded rows only: give one prompt, or prompts of one length")
        cache = cache if cache is not None else RuntimeCache(self.runtime.new_cache(input_ids.shape[0]))
        logits, _ = self.runtime.forward(input_ids.cpu().numpy(), cache.inner, last_only=True)
        return RuntimeStep(torch.from_numpy(np.ascontiguousarray(logits)), cache)

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_id: int,
               hook: Callable[[list[int], int], list[int] | None] | None = None,
               allowed: Callable[[int], Sequence[int] | None] | None = None) -> list[int]:
        """Greedy tokens after ``prompt`` up to and with ``stop_id``, through the runtime's own cache;
        ``hook`` may insert ids after a token and ``allowed`` confine one (the engine's rules for one row)."""
        return greedy_generate(self.runtime, list(prompt), max_new_tokens, stop_id, hook, allowed)
