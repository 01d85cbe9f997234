"""The model settings the runtime needs, read from the bundle's ``config.json`` (the Hugging Face config)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True)
class RuntimeConfig:
    """Shapes and inference constants of the TRM x Titans-MAG model (names as in ``ForgeConfig``)."""

    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    window: int
    d_mem: int
    mem_chunk: int
    trm_t_max: int
    trm_micro_steps: int
    max_seq_len: int = 128
    rotary_fraction: float = 0.5
    rope_theta: float = 10000.0
    mem_capacity: int = 4096
    mem_decay: float | None = None
    mem_lr: float = 1.0
    surprise_weight: float = 0.5
    novelty_weight: float = 0.5
    act_threshold: float = 0.5
    rms_norm_eps: float = 1e-6
    eos_token_id: int | None = 2

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RuntimeConfig:
        names = {f.name for f in fields(cls)}
        chosen = {k: v for k, v in values.items() if k in names}
        eos = chosen.get("eos_token_id")
        if isinstance(eos, list):
            chosen["eos_token_id"] = eos[0] if eos else None
        return cls(**chosen)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rotary_dim(self) -> int:
        return int(self.head_dim * self.rotary_fraction) // 2 * 2

    @property
    def mem_alpha(self) -> float:
        if self.mem_decay is not None:
            return 1.0 - float(self.mem_decay) ** self.mem_chunk
        return 1.0 - math.exp(-self.mem_chunk / self.mem_capacity)

    @property
    def mem_theta(self) -> float:
        return float(self.surprise_weight) * float(self.mem_lr) / self.mem_chunk

    @property
    def mem_eta(self) -> float:
        return float(self.novelty_weight)
