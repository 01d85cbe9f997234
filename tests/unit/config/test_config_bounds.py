"""Every numeric config key is finite and bounded, refused at load time with its key named (issue 25, F10)."""

from __future__ import annotations

import pytest

from agent_forge.config import load_config
from agent_forge.config.loader import available_presets, validate_config
from agent_forge.config.schema import MAX_MAGNITUDE
from agent_forge.errors import ConfigError


@pytest.mark.parametrize("preset", available_presets())
def test_every_preset_is_within_the_bounds(preset):
    load_config(preset, None, None)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("cognate.lr_scale=.inf", "cognate.lr_scale"),
        ("cognate.lr_scale=.nan", "cognate.lr_scale"),
        ("cognate.lr_scale=-.inf", "cognate.lr_scale"),
        ("cognate.trunk_steps=100000000000000000000000", "cognate.trunk_steps"),
        ("cognate.trunk_steps=1.0e23", "cognate.trunk_steps"),
        ("forge.steps=1e23", "forge.steps"),
        ("cognate.train.grad_clip=1.0e300", "cognate.train.grad_clip"),
        ("data.seed=-100000000000000", "data.seed"),
        ("model.act_step_cost=.inf", "model.act_step_cost"),
    ],
)
def test_non_finite_or_absurd_numbers_name_their_key(override, key):
    with pytest.raises(ConfigError) as error:
        load_config("smoke", None, [override])
    message = str(error.value)
    assert f"'{key}" in message and "unknown" not in message and "\n" not in message


def test_large_but_sane_values_still_load():
    cfg = load_config("smoke", None, ["cognate.trunk_steps=1000000", "cognate.lr_scale=50.0"])
    assert cfg.cognate.trunk_steps == 1_000_000 and MAX_MAGNITUDE >= 1_000_000


@pytest.mark.parametrize("weight", [float("inf"), float("nan"), 1e30])
def test_numbers_inside_mappings_are_bounded_too(weight):
    data = load_config("smoke", None, None).model_dump(mode="json")
    data["cognate"]["specialists"][0]["kind_weights"] = {"code": weight}
    with pytest.raises(ConfigError, match=r"'cognate\.specialists\.0\.kind_weights"):
        validate_config(data)
