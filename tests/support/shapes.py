"""The small model the unit tests were written against: the smoke preset with 4 heads, 3 recursion steps
(2 micro steps each), an 8-token memory chunk, a 16-token window and MLP 128, so a test can check rows per
head, three step weights and memory-chunk boundaries. Named shapes themselves are the presets' data."""

from __future__ import annotations

from typing import Any

from agent_forge.model import ForgeConfig

UNIT_SHAPE = {"num_heads": 4, "mlp_hidden": 128, "window": 16, "mem_chunk": 8, "trm_t_max": 3, "trm_micro_steps": 2}


def unit_config(**overrides: Any) -> ForgeConfig:
    return ForgeConfig.from_shape("smoke", **{**UNIT_SHAPE, **overrides})
