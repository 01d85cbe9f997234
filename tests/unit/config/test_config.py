from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.config import available_presets, config_diff, load_config, parse_override
from agent_forge.config.loader import deep_merge, preset_dict, read_config_file, validate_config
from agent_forge.errors import ConfigError


@pytest.mark.parametrize("name", ["tiny", "smoke", "spec25m"])
def test_every_shipped_preset_loads(name: str) -> None:
    config = load_config(name)
    assert config.preset == name
    assert "cognate->evomerge" in config.handoff


def test_presets_listed() -> None:
    assert set(available_presets()) >= {"tiny", "smoke", "spec25m"}


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match=r"unknown preset 'huge'.*tiny"):
        load_config("huge")


def test_file_and_set_overrides_merge(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cognate:\n  trunk_steps: 7\n  train: {batch_size: 3}\n")
    config = load_config("smoke", path, ["forge.grokfast=false", "evomerge.generations=4"])
    assert config.cognate.trunk_steps == 7 and config.cognate.train.batch_size == 3
    assert config.cognate.train.eval_every == 10  # kept from the preset
    assert config.forge.grokfast is False and config.evomerge.generations == 4


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("cognate.bogus=1", "unknown config key 'cognate.bogus'"),
        ("cognate.trunk_steps=abc", "config key 'cognate.trunk_steps'"),
        ("cognate.trunk_steps=-5", "config key 'cognate.trunk_steps'"),
        ("forge.band_down=0.9", "band_down"),
        ("model.num_heads=3", "divisible"),
        ("handoff.a->b.num_models=1", "handoff key"),
        ("nope", "has no '='"),
        (".x=1", "empty key"),
    ],
)
def test_bad_values_name_the_key(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        load_config("smoke", overrides=[override])
    assert "\n" not in str(info.value)


def test_missing_and_corrupt_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config("tiny", tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cognate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        read_config_file(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        read_config_file(listy)
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError):
        read_config_file(binary)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_config_file(empty) == {}


def test_override_parsing_and_diff() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=") == {"a": ""}
    assert deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 5}}) == {"a": {"b": 5, "c": 2}}
    assert config_diff({"a": {"b": 1}, "c": 1}, {"a": {"b": 2}, "c": 1, "d": 0}) == ["a.b", "d"]


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["cognate.trunk_steps", "evomerge.generations", "model.hidden_size", "data.seq_len",
                             "forge.band_up", "bitnet.pack_format", "runtime.device", "cognate.nope", "zzz"]),
            st.one_of(st.integers(-5, 5), st.floats(allow_nan=True), st.text(max_size=5), st.booleans(),
                      st.none()),
        ),
        max_size=4,
    )
)
def test_fuzzed_overrides_fail_in_one_line_or_load(pairs: list[tuple[str, object]]) -> None:
    overrides = [f"{key}={value!r}" if isinstance(value, str) else f"{key}={value}" for key, value in pairs]
    try:
        load_config("smoke", overrides=overrides)
    except ConfigError as exc:
        assert "\n" not in str(exc) and str(exc)


def test_specialist_kind_weights_take_kinds_and_kind_at_level():
    config = load_config("tiny")
    reasoning = config.cognate.specialists[0]
    assert reasoning.kind_weights["arith@1"] > reasoning.kind_weights["arith"]
    good = {"cognate": {"specialists": [{"name": "a", "seed": 1, "kind_weights": {"mc": 2.0, "code@3": 1.5}}]}}
    assert validate_config(deep_merge(preset_dict("smoke"), good)).cognate.specialists[0].kind_weights["code@3"] == 1.5
    for key in ("poetry", "arith@x"):
        bad = {"cognate": {"specialists": [{"name": "a", "seed": 1, "kind_weights": {key: 1.0}}]}}
        with pytest.raises(ConfigError, match="kind_weights"):
            validate_config(deep_merge(preset_dict("smoke"), bad))


def test_training_mix_is_checked_like_a_specialists():
    assert load_config("tiny").data.kind_weights["arith@1"] > 1.0
    assert load_config("smoke").data.kind_weights == {}
    good = {"data": {"kind_weights": {"arith@2": 3.0}}}
    assert validate_config(deep_merge(preset_dict("smoke"), good)).data.kind_weights == {"arith@2": 3.0}
    for key, weight in (("poetry", 1.0), ("mc@one", 1.0), ("code", -1.0)):
        bad = {"data": {"kind_weights": {key: weight}}}
        with pytest.raises(ConfigError, match=r"data\.kind_weights"):
            validate_config(deep_merge(preset_dict("smoke"), bad))


def test_thought_share_takes_kinds_with_a_share_in_0_1():
    assert load_config("tiny").data.thought_share == {"arith": 0.5}
    assert load_config("smoke").data.thought_share == {}
    for shares in ({"poetry": 0.5}, {"arith": 1.5}, {"arith@1": 0.5}, {"mc": -0.1}):
        with pytest.raises(ConfigError, match="thought_share"):
            validate_config(deep_merge(preset_dict("smoke"), {"data": {"thought_share": shares}}))
