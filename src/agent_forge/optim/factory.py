"""``build_optimizer``: the one call a phase makes to get its optimizer for a model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from torch import nn

from agent_forge.optim.config import MuGrokConfig
from agent_forge.optim.muon_grokfast import MuonGrokfast
from agent_forge.optim.qk_clip import QKClipTarget
from agent_forge.optim.routing import Route


def build_optimizer(
    model: nn.Module,
    config: MuGrokConfig | None = None,
    qk_clip_modules: Sequence[QKClipTarget] | None = None,
    route_overrides: Mapping[str, Route] | None = None,
) -> MuonGrokfast:
    """Route ``model``'s trainable parameters and build the optimizer.

    Routing (``agent_forge.optim.routing.route_parameter``): tensors that are not 2-D, names containing
    "embed" or "lm_head", and matrices with a dimension of 1 go to AdamW; every other 2-D matrix goes to
    Muon; ``route_overrides`` wins over the rule. Frozen parameters are left out.

    QK-clip: with ``qk_clip_modules=None`` and a ``qk_clip_tau`` set, a model exposing
    ``attention_modules()`` has those clipped, and its ``track_max_logit`` is switched on, because a
    clip without measured logits would silently never fire. Pass ``qk_clip_modules=[]`` to opt out.
    """
    config = cpu_newton_schulz(config or MuGrokConfig(), model)
    if qk_clip_modules is None:
        qk_clip_modules = _model_attention(model) if config.qk_clip_tau is not None else []
    return MuonGrokfast(model.named_parameters(), config, qk_clip_modules, route_overrides)


def cpu_newton_schulz(config: MuGrokConfig, model: nn.Module) -> MuGrokConfig:
    """Newton-Schulz in fp32 when every parameter lives on the CPU: measured 3.5x faster there than bf16
    (0.07 s vs 0.26 s per tiny optimizer step), while bf16 is the fast choice on GPUs."""
    on_cpu = all(p.device.type == "cpu" for p in model.parameters())
    if on_cpu and config.ns_dtype == "bfloat16":
        return dataclasses.replace(config, ns_dtype="float32")
    return config


def _model_attention(model: nn.Module) -> list[QKClipTarget]:
    lister = getattr(model, "attention_modules", None)
    if not callable(lister):
        return []
    modules = list(lister())
    if modules:
        model.track_max_logit = True
    return modules
