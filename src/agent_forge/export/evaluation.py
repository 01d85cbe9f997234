"""Score the numpy runtime with the project's own held-out evaluation (D6 for the exported model).

``eval.evaluate`` calls ``model(input_ids=..., attention_mask=...)`` on right-padded batches and reads
logits; ``RuntimeLM`` answers that call with the runtime, one sequence at a time, on each row's real
tokens (padding comes after them, so a causal model's logits at real positions never depend on it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from agent_forge.export.runtime import ForgeRuntimeModel


class RuntimeLM(nn.Module):
    """An ``nn.Module`` face for ``ForgeRuntimeModel`` (no parameters; logits as a torch tensor)."""

    def __init__(self, runtime: ForgeRuntimeModel) -> None:
        super().__init__()
        self.runtime = runtime

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                use_cache: bool | None = None, **kwargs: Any) -> torch.Tensor:
        ids = input_ids.cpu().numpy()
        mask = np.ones_like(ids) if attention_mask is None else attention_mask.cpu().numpy()
        out = np.zeros((*ids.shape, self.runtime.config.vocab_size), dtype=np.float32)
        for row in range(ids.shape[0]):
            n = int(mask[row].sum())
            if not mask[row, :n].all():
                raise ValueError("RuntimeLM takes right-padded batches only")
            if n:
                out[row, :n] = self.runtime.forward(ids[row, :n])[0]
        return torch.from_numpy(out)
