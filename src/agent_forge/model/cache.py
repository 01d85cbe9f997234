"""`ForgeCache`: what generation carries from one decoding step to the next.

Per layer: the rotary keys/values of the last window-1 positions and the Titans memory state (M, its
momentum and the statistics of the unfinished chunk). It subclasses `transformers.Cache` so `generate()`
threads it through `cache=` and reads `get_seq_length()` to feed only the new tokens. Memory cannot be
un-written, so the cache cannot be cropped (assisted decoding is not supported).
"""

from __future__ import annotations

import torch
from transformers import Cache

from agent_forge.model.block import LayerState


class ForgeCache(Cache):
    """Sliding-window K/V plus per-sequence memory, for every layer."""

    def __init__(self, num_layers: int) -> None:
        super().__init__(layers=[])
        self.num_layers = num_layers
        self.states: list[LayerState | None] = [None] * num_layers
        self.key_valid: torch.Tensor | None = None
        self.seen_tokens = 0

    def __len__(self) -> int:
        return self.num_layers

    def __repr__(self) -> str:
        return f"ForgeCache(layers={self.num_layers}, seen_tokens={self.seen_tokens})"

    def store(self, states: list[LayerState], key_valid: torch.Tensor | None, new_tokens: int) -> None:
        """Keep the layer states and the validity of the kept keys after a forward over `new_tokens`."""
        self.states = list(states)
        self.key_valid = key_valid
        self.seen_tokens += new_tokens

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.seen_tokens

    def get_max_length(self, layer_idx: int | None = None) -> int:
        return -1

    def reset(self) -> None:
        self.states = [None] * self.num_layers
        self.key_valid = None
        self.seen_tokens = 0

    def _select(self, index: torch.Tensor) -> None:
        self.states = [None if s is None else s.select(index) for s in self.states]
        if self.key_valid is not None:
            self.key_valid = self.key_valid.index_select(0, index)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._select(beam_idx.to(torch.long))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._select(indices.to(torch.long))

    def batch_repeat_interleave(self, repeats: int) -> None:
        batch = self.batch_size
        if batch > 0:
            self._select(torch.arange(batch).repeat_interleave(repeats).to(self._device()))

    def crop(self, tokens_to_remove: int) -> None:
        raise ValueError("ForgeCache cannot be cropped: the Titans memory cannot un-write tokens")

    def _device(self) -> torch.device:
        first = self.states[0]
        return first.keys.device if first is not None else torch.device("cpu")

    @property
    def batch_size(self) -> int:
        first = self.states[0]
        return -1 if first is None else first.keys.shape[0]

    @property
    def is_compileable(self) -> bool:
        return False

    @property
    def is_initialized(self) -> bool:
        return self.states[0] is not None

    @property
    def is_croppable(self) -> bool:
        return False

    @property
    def is_sliding(self) -> list[bool]:
        return [True] * self.num_layers

    @property
    def is_linear(self) -> list[bool]:
        return [False] * self.num_layers
