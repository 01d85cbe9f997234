"""A BitNet model and its packed file as one model: storage precision absorbed, logits compared.

``save_packed`` keeps the non-ternary tensors at lower precision (fp16, or int8 rows for embeddings), so
the file alone is not quite the model in memory. ``absorb_storage_precision`` writes the file and loads
its plain tensors back into the model; from then on the model in memory, its full-precision checkpoint
and the packed file compute the same logits, which ``packed_logits_gap`` measures on a model rebuilt
from the file alone.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch
from torch import nn

from agent_forge.quant.packed_io import PackedSaveConfig, load_packed, load_packed_into, save_packed


def absorb_storage_precision(
    model: nn.Module, path: str | Path, config: PackedSaveConfig | None = None
) -> int:
    """Write ``model`` packed to ``path``, then set its plain tensors to the stored values; returns bytes.

    The ternary layers are untouched: their values and scales are stored exactly. Idempotent in effect:
    a second call stores what the first loaded back.
    """
    size = save_packed(model, path, config)
    checkpoint = load_packed(path)
    with torch.no_grad():
        result = model.load_state_dict(checkpoint.tensors, strict=False)
    if result.unexpected_keys:
        raise ValueError(f"packed file holds tensors the model lacks: {sorted(result.unexpected_keys)[:3]}")
    return size


def _blank_copy(model: nn.Module) -> nn.Module:
    """A copy with every stored floating tensor set to NaN: whatever the file does not restore shows up.

    Non-persistent buffers (rotary frequencies and the like) are derived from the config, not stored,
    so they stay as they are.
    """
    blank = copy.deepcopy(model)
    with torch.no_grad():
        for tensor in blank.state_dict().values():
            if tensor.is_floating_point():
                tensor.fill_(math.nan)
    return blank


@torch.no_grad()
def packed_logits_gap(model: nn.Module, path: str | Path, input_ids: torch.Tensor) -> float:
    """Largest absolute logit difference between ``model`` and a copy loaded from the packed file alone.

    0.0 means the file reproduces the model exactly; NaN means the file left some tensor unset.
    """
    rebuilt = _blank_copy(model)
    load_packed_into(rebuilt, path)
    was_training = model.training
    model.eval()
    rebuilt.eval()
    try:
        expected = model(input_ids=input_ids).logits
        actual = rebuilt(input_ids=input_ids).logits
    finally:
        model.train(was_training)
    return float((expected.float() - actual.float()).abs().max())
