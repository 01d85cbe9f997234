"""ForgeConfig: the three shapes, their exact parameter counts (D9) and value checks."""

from __future__ import annotations

import math

import pytest
import torch

from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model.params import FAMILIES
from support.shapes import unit_config

SPEC25M_PARAMS = 25_767_553
SPEC25M_BREAKDOWN = {
    "embedding": 12_582_912,
    "attention": 4_718_592,
    "mlp": 6_488_064,
    "memory": 1_179_648,
    "gate": 396_288,
    "trm": 393_600,
    "act": 385,
    "norm": 8_064,
}


def count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_spec25m_count_and_breakdown_are_exact() -> None:
    model = ForgeForCausalLM(ForgeConfig.from_shape("spec25m"))
    assert count(model) == SPEC25M_PARAMS
    assert 22_500_000 <= SPEC25M_PARAMS <= 27_500_000
    assert model.param_breakdown() == SPEC25M_BREAKDOWN
    assert sum(SPEC25M_BREAKDOWN.values()) == SPEC25M_PARAMS


def test_the_spec25m_preset_builds_exactly_the_counted_shape() -> None:
    """The preset YAML is what a run builds: it must not drift from the shape whose count is asserted
    (it once did, to 29.7M parameters, outside the 22.5M-27.5M range its own hand-off checks)."""
    from agent_forge.config import load_config
    from agent_forge.model.config import SHAPES
    from agent_forge.phases.common import forge_config

    built = forge_config(load_config("spec25m"))
    assert {key: getattr(built, key) for key in SHAPES["spec25m"]} == SHAPES["spec25m"]
    with torch.device("meta"):
        assert count(ForgeForCausalLM(built)) == SPEC25M_PARAMS


@pytest.mark.parametrize("shape", ["tiny", "smoke", "spec25m"])
def test_a_named_shape_is_what_a_run_of_that_preset_builds(shape: str) -> None:
    """One source of truth: the preset's model section (once, a second table of shapes had drifted)."""
    from agent_forge.config import load_config
    from agent_forge.phases.common import forge_config

    assert ForgeConfig.from_shape(shape).to_dict() == forge_config(load_config(shape)).to_dict()


def test_the_model_section_and_the_model_config_share_their_defaults() -> None:
    from agent_forge.config.schema import ModelSection

    section, config = ModelSection(), ForgeConfig()
    assert {name: getattr(config, name) for name in ModelSection.model_fields} == section.model_dump()


def test_spec25m_keeps_the_spec_fixed_points() -> None:
    config = ForgeConfig.from_shape("spec25m")
    assert (config.vocab_size, config.max_seq_len, config.window, config.num_heads) == (32768, 2048, 1024, 8)
    assert config.tie_word_embeddings


@pytest.mark.parametrize("shape", ["tiny", "smoke"])
def test_breakdown_sums_to_the_parameter_count(shape: str) -> None:
    model = ForgeForCausalLM(ForgeConfig.from_shape(shape))
    breakdown = model.param_breakdown()
    assert set(breakdown) == set(FAMILIES)
    assert all(v > 0 for v in breakdown.values())
    assert sum(breakdown.values()) == count(model)


def test_tiny_is_between_one_and_four_million() -> None:
    assert 1_000_000 <= count(ForgeForCausalLM(ForgeConfig.from_shape("tiny"))) <= 4_000_000


def test_untied_head_gets_its_own_family() -> None:
    model = ForgeForCausalLM(unit_config(tie_word_embeddings=False))
    breakdown = model.param_breakdown()
    assert breakdown["head"] == 512 * 64
    assert sum(breakdown.values()) == count(model)


def test_memory_constants_follow_the_documented_mapping() -> None:
    config = ForgeConfig.from_shape("tiny", mem_capacity=4096, surprise_weight=0.7, novelty_weight=0.3)
    assert config.mem_alpha == pytest.approx(1 - math.exp(-16 / 4096))
    assert config.mem_theta == pytest.approx(0.7 / 16)
    assert config.mem_eta == pytest.approx(0.3)
    decayed = ForgeConfig.from_shape("tiny", mem_decay=0.99)
    assert decayed.mem_alpha == pytest.approx(1 - 0.99**16)


def test_rotary_dim_is_half_the_head_by_default_and_even() -> None:
    config = ForgeConfig.from_shape("spec25m")
    assert config.head_dim == 48 and config.rotary_dim == 24
    assert unit_config(rotary_fraction=0.3).rotary_dim % 2 == 0


def test_step_weights_are_normalised() -> None:
    assert unit_config(step_weights=[1, 1, 2]).resolved_step_weights == [0.25, 0.25, 0.5]
    assert unit_config().resolved_step_weights == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("num_heads", 3),
        ("novelty_weight", 1.0),
        ("surprise_weight", 2.0),
        ("act_threshold", 1.0),
        ("act_ema", 0.0),
        ("mem_decay", 1.5),
        ("step_weights", [1.0]),
        ("window", 0),
        ("rotary_fraction", 0.01),
    ],
)
def test_impossible_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        unit_config(**{field: value})


def test_unknown_shape_raises() -> None:
    with pytest.raises(ValueError, match="unknown shape"):
        ForgeConfig.from_shape("huge")


def test_config_round_trips_through_json(tmp_path) -> None:
    config = unit_config(act_threshold=0.9, step_weights=[1, 2, 3])
    config.save_pretrained(tmp_path)
    loaded = ForgeConfig.from_pretrained(tmp_path)
    assert loaded.to_dict() == config.to_dict()
    assert loaded.model_type == "agent_forge_trm"
