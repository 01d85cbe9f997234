"""Shared smoke models for the export tests: a BitLinear model and a plain one, fixed seeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from agent_forge.export.runtime import ForgeRuntimeModel, RuntimeConfig, load_weights
from agent_forge.export.ternary import activation_settings, export_ternary
from agent_forge.model import ForgeForCausalLM
from agent_forge.quant.bitlinear import BitLinearConfig, replace_linears
from support.shapes import unit_config


def smoke_model(bitlinear: bool, seed: int = 0, **overrides: object) -> ForgeForCausalLM:
    """A smoke-shape model with three recursion steps (so ACT halting varies by position)."""
    torch.manual_seed(seed)
    model = ForgeForCausalLM(unit_config(trm_t_max=3, **overrides)).eval()
    if bitlinear:
        replace_linears(model, keep={"lm_head"}, config=BitLinearConfig())
    return model


def runtime_of(model: ForgeForCausalLM, folder: Path, float_dtype: str = "float32",
               fmt: str = "tq2_0") -> ForgeRuntimeModel:
    """Pack ``model`` the way a bundle does and load it into the numpy runtime."""
    path = export_ternary(model, folder, fmt, float_dtype)
    acts = activation_settings(model)
    return ForgeRuntimeModel(load_weights(path, acts.bits, acts.eps), RuntimeConfig.from_dict(model.config.to_dict()))


@pytest.fixture(scope="module")
def bit_model() -> ForgeForCausalLM:
    return smoke_model(True)


@pytest.fixture(scope="module")
def float_model() -> ForgeForCausalLM:
    return smoke_model(False)


@pytest.fixture
def make_model() -> Callable[..., ForgeForCausalLM]:
    return smoke_model


@pytest.fixture
def make_runtime() -> Callable[..., ForgeRuntimeModel]:
    return runtime_of


@pytest.fixture
def ids() -> Callable[..., list[int]]:
    def draw(n: int, seed: int = 1, vocab: int = 512) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(3, vocab, (n,), generator=generator).tolist()

    return draw
