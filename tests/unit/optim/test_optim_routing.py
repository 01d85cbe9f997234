"""Routing: hidden matrices to Muon; embeddings, the head, vectors and odd shapes to AdamW."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agent_forge.optim import MuGrokConfig, build_optimizer, route_named_parameters


class SmallLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(50, 16)
        self.block = nn.ModuleDict(
            {
                "norm": nn.LayerNorm(16),
                "up": nn.Linear(16, 40),
                "down": nn.Linear(40, 16, bias=False),
                "conv": nn.Conv1d(16, 16, 3, groups=16),
                "halt": nn.Linear(16, 1),
            }
        )
        self.scale = nn.Parameter(torch.ones(()))
        self.lm_head = nn.Linear(16, 50, bias=False)
        self.frozen = nn.Linear(16, 16)
        self.frozen.requires_grad_(False)


EXPECTED = {
    "embed_tokens.weight": "adamw",
    "block.norm.weight": "adamw",
    "block.norm.bias": "adamw",
    "block.up.weight": "muon",
    "block.up.bias": "adamw",
    "block.down.weight": "muon",
    "block.conv.weight": "adamw",
    "block.conv.bias": "adamw",
    "block.halt.weight": "adamw",
    "block.halt.bias": "adamw",
    "scale": "adamw",
    "lm_head.weight": "adamw",
}


def test_routing_of_a_small_model() -> None:
    optimizer = build_optimizer(SmallLM(), MuGrokConfig())
    assert optimizer.routing == EXPECTED


def test_groups_hold_routed_parameters_with_their_lrs_and_decay() -> None:
    model = SmallLM()
    config = MuGrokConfig(muon_lr=0.02, fallback_lr=0.003, weight_decay=0.1, fallback_weight_decay=0.01)
    optimizer = build_optimizer(model, config)
    by_name = dict(model.named_parameters())
    summary = {
        (group["kind"], group["lr"], group["weight_decay"]): sorted(group["param_names"])
        for group in optimizer.param_groups
    }
    muon_names = sorted(name for name, route in EXPECTED.items() if route == "muon")
    adamw_matrices = sorted(n for n, r in EXPECTED.items() if r == "adamw" and by_name[n].ndim >= 2)
    adamw_vectors = sorted(n for n, r in EXPECTED.items() if r == "adamw" and by_name[n].ndim < 2)
    assert summary == {
        ("muon", 0.02, 0.1): muon_names,
        ("adamw", 0.003, 0.01): adamw_matrices,
        ("adamw", 0.003, 0.0): adamw_vectors,
    }
    assert all(name in optimizer.routing for group in summary.values() for name in group)


def test_tied_head_is_routed_once_to_adamw() -> None:
    model = SmallLM()
    model.lm_head.weight = model.embed_tokens.weight
    optimizer = build_optimizer(model, MuGrokConfig())
    assert "lm_head.weight" not in optimizer.routing and optimizer.routing["embed_tokens.weight"] == "adamw"


def test_overrides_win_and_are_checked() -> None:
    model = SmallLM()
    optimizer = build_optimizer(model, MuGrokConfig(), route_overrides={"block.down.weight": "adamw"})
    assert optimizer.routing["block.down.weight"] == "adamw"
    with pytest.raises(ValueError, match="Muon only updates 2-D"):
        build_optimizer(model, MuGrokConfig(), route_overrides={"block.norm.weight": "muon"})
    with pytest.raises(ValueError, match="unknown parameters"):
        build_optimizer(model, MuGrokConfig(), route_overrides={"nope.weight": "adamw"})
    with pytest.raises(ValueError, match="one of"):
        build_optimizer(model, MuGrokConfig(), route_overrides={"block.up.weight": "sgd"})


def test_duplicate_names_are_refused() -> None:
    weight = nn.Parameter(torch.ones(4, 4))
    with pytest.raises(ValueError, match="twice"):
        route_named_parameters([("w", weight), ("w", nn.Parameter(torch.ones(4, 4)))])


def test_model_without_attention_modules_gets_no_clip() -> None:
    model = SmallLM()
    optimizer = build_optimizer(model, MuGrokConfig(qk_clip_tau=30.0))
    assert optimizer.qk_clip_modules == [] and not hasattr(model, "track_max_logit")
