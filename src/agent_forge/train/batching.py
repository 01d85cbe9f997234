"""Batches as tensors or dicts of tensors: splitting into micro-batches and moving between devices."""

from __future__ import annotations

from typing import Any

import torch


def split_batch(batch: Any, parts: int) -> list[Any]:
    """Split along dim 0 into at most ``parts`` micro-batches (dicts are split key by key)."""
    if parts <= 1:
        return [batch]
    if isinstance(batch, torch.Tensor):
        return list(batch.chunk(parts, dim=0))
    if isinstance(batch, dict):
        pieces = {k: split_batch(v, parts) for k, v in batch.items()}
        count = min(len(v) for v in pieces.values())
        return [{k: v[i] for k, v in pieces.items()} for i in range(count)]
    if isinstance(batch, (list, tuple)):
        size = max(1, -(-len(batch) // parts))
        return [batch[i : i + size] for i in range(0, len(batch), size)]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}")


def move_batch(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_batch(v, device) for k, v in batch.items()}
    return batch
