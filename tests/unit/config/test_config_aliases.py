"""Old config names still load: sections phase1..phase8 (now the phases' names) and Phase 3's ``bake_*`` keys.

They come from a user's YAML file, a ``--set`` key or the stored config of a session written before the rename;
the first old name a user writes prints one deprecation line, stored sessions load silently.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent_forge.config import PHASE_NAMES, load_config, loader
from agent_forge.config.loader import renamed_keys, validate_config
from agent_forge.config.schema import KEY_ALIASES, SECTION_ALIASES
from agent_forge.errors import ConfigError

STORED = Path(__file__).resolve().parents[2] / "fixtures" / "session_config_before_section_names.json"


@pytest.fixture(autouse=True)
def fresh_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process would: no old name seen yet."""
    monkeypatch.setattr(loader, "_aliases_seen", set())


def test_every_old_section_names_its_phase_in_order() -> None:
    assert list(SECTION_ALIASES) == [f"phase{n}" for n in range(1, 9)]
    assert tuple(SECTION_ALIASES.values()) == PHASE_NAMES


def test_an_old_yaml_file_gives_the_same_config_as_the_new_names(tmp_path: Path) -> None:
    old, new = tmp_path / "old.yaml", tmp_path / "new.yaml"
    old.write_text("phase1:\n  trunk_steps: 7\n  train: {batch_size: 3}\nphase3:\n  bake_steps: 9\n"
                   "  bake_lr_scale: 2.0\nphase8: {zstd_level: 5}\n")
    new.write_text("cognate:\n  trunk_steps: 7\n  train: {batch_size: 3}\nquietstar:\n  thought_sft_steps: 9\n"
                   "  thought_sft_lr_scale: 2.0\nfinal: {zstd_level: 5}\n")
    from_old, from_new = load_config("smoke", old), load_config("smoke", new)
    assert from_old == from_new
    assert from_old.cognate.trunk_steps == 7 and from_old.cognate.train.eval_every == 10  # the rest from the preset
    assert from_old.quietstar.thought_sft_steps == 9 and from_old.final.zstd_level == 5


def test_old_set_keys_override_the_presets_new_names() -> None:
    config = load_config("smoke", None, ["phase4.finetune_steps=3", "phase3.bake_examples=50",
                                         "phase2.fitness.speed=0.5"])
    assert config.bitnet.finetune_steps == 3 and config.quietstar.thought_sft_examples == 50
    assert config.evomerge.fitness.speed == 0.5 and config.evomerge.generations == 3  # the preset's value kept


def test_a_bad_value_under_an_old_key_names_the_current_key() -> None:
    with pytest.raises(ConfigError, match=r"config key 'cognate\.trunk_steps'"):
        load_config("smoke", None, ["phase1.trunk_steps=-3"])


def test_the_notice_is_one_line_shown_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = tmp_path / "old.yaml"
    old.write_text("phase5: {steps: 3}\n")
    load_config("smoke", old, ["phase1.trunk_steps=2", "phase3.bake_steps=2"])
    load_config("smoke", None, ["phase7.decode_tokens=2"])
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "'phase5' is now 'forge'" in err and "deprecated" in err and "phase1..phase8" in err


def test_new_names_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    load_config("tiny", None, ["forge.steps=3", "quietstar.thought_sft_steps=2"])
    assert capsys.readouterr().err == ""


def test_where_one_layer_spells_a_key_both_ways_the_new_name_wins() -> None:
    data = renamed_keys({"phase1": {"trunk_steps": 1, "specialist_steps": 4}, "cognate": {"trunk_steps": 2},
                         "quietstar": {"bake_steps": 5, "thought_sft_steps": 6}}, notify=False)
    assert data == {"cognate": {"trunk_steps": 2, "specialist_steps": 4}, "quietstar": {"thought_sft_steps": 6}}


def test_every_key_alias_names_a_real_field() -> None:
    config = load_config("smoke")
    for section, aliases in KEY_ALIASES.items():
        fields = type(config.phase_section(section)).model_fields
        assert set(aliases.values()) <= set(fields) and not set(aliases) & set(fields)


def test_a_session_config_stored_before_the_rename_loads_silently(capsys: pytest.CaptureFixture[str]) -> None:
    """The JSON the registry holds for a session created by the code before the rename (smoke, a few --set)."""
    stored = json.loads(STORED.read_text())
    assert "phase1" in stored and "cognate" not in stored and "bake_steps" in stored["phase3"]
    config = validate_config(stored)
    assert capsys.readouterr().err == ""
    assert config.cognate.trunk_steps == 3 and config.quietstar.thought_sft_steps == 4
    assert config.model_dump(mode="json")["cognate"] == stored["phase1"]
    renamed_sections = {new: stored[old] for old, new in SECTION_ALIASES.items()}
    renamed_sections["quietstar"] = renamed_keys({"quietstar": stored["phase3"]}, notify=False)["quietstar"]
    dumped = config.model_dump(mode="json")
    # every stored value comes back under its new name (keys added since then take their defaults)
    assert all(dumped[name][key] == value for name in PHASE_NAMES for key, value in renamed_sections[name].items())
