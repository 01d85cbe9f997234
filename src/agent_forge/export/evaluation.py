"""Score the numpy runtime with the project's own held-out evaluation (D6 for the exported model).

``eval.evaluate`` calls ``model(input_ids=..., attention_mask=...)`` on right-padded batches and reads
logits; ``RuntimeLM`` answers that call with one batched runtime forward. Padding only ever comes after a
row's real tokens, and the model is causal (attention, chunked memory, position-wise recursion), so the
logits at real positions are those of the row alone; the padded positions are never scored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from agent_forge.export.runtime import ForgeRuntimeModel
from agent_forge.export.runtime.bundle import greedy_generate


class RuntimeLM(nn.Module):
    """An ``nn.Module`` face for ``ForgeRuntimeModel`` (no parameters; logits as a torch tensor)."""

    def __init__(self, runtime: ForgeRuntimeModel) -> None:
        super().__init__()
        self.runtime = runtime

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                use_cache: bool | None = None, **kwargs: Any) -> torch.Tensor:
        ids = input_ids.cpu().numpy()
        if attention_mask is not None:
            mask = attention_mask.cpu().numpy().astype(bool)
            if (mask[:, 1:] & ~mask[:, :-1]).any():
                raise ValueError("RuntimeLM takes right-padded batches only")
        logits, _ = self.runtime.forward(ids)
        return torch.from_numpy(np.ascontiguousarray(logits))

    def greedy(self, prompt: list[int], max_new_tokens: int, stop_id: int,
               hook: Callable[[list[int], int], list[int] | None] | None = None) -> list[int]:
        """Greedy tokens after ``prompt`` up to and with ``stop_id``, through the runtime's own cache;
        ``hook`` may insert ids after a token (the engine's insert hook for one row)."""
        return greedy_generate(self.runtime, list(prompt), max_new_tokens, stop_id, hook)
