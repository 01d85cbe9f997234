"""The model card: built from a real registry (lineage across phases, D6 record per kind and mode, data,
size, license), never from typed-in figures."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from agent_forge.config import load_config
from agent_forge.export.card import gather_card, project_license, recorded_kinds, render_card
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace

SESSION = "20260301-120000-smoke-card01"
EXTRA = {"accuracy_arith": 0.412, "accuracy_arith_ci_low": 0.371, "accuracy_arith_ci_high": 0.455,
         "accuracy_arith_n": 500, "accuracy_arith_chance": 0.0, "accuracy_arith_majority": 0.05,
         "accuracy_mc": 0.333, "accuracy_mc_ci_low": 0.29, "accuracy_mc_ci_high": 0.378, "accuracy_mc_n": 500,
         "accuracy_mc_chance": 0.317, "accuracy_mc_majority": 0.322, "accuracy_level_1": 0.6,
         "accuracy_ci_low": 0.35, "accuracy_ci_high": 0.39, "accuracy_n": 1000,
         "think_accuracy_arith": 0.217, "think_accuracy_arith_ci_low": 0.146, "think_accuracy_arith_ci_high": 0.31,
         "think_accuracy_arith_n": 100, "think_accuracy_rate": 1.0,
         "tools_accuracy_arith": 0.61, "tools_accuracy_arith_ci_low": 0.52, "tools_accuracy_arith_ci_high": 0.69,
         "tools_accuracy_arith_n": 50}


def _model(registry: ModelRegistry, phase: str, name: str, parents: list[str], metadata: dict) -> str:
    model_id = f"{SESSION}__{phase}__{name}"
    registry.register_model({"model_id": model_id, "session_id": SESSION, "phase_name": phase, "model_name": name,
                             "model_path": f"sessions/{SESSION}/{phase}/{name}", "size_mb": 99.0,
                             "parameters": 1000, "metadata": metadata, "tags": []}, parents=parents)
    return model_id


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(Workspace(tmp_path).registry_path)
    config = load_config("smoke", overrides=["data.thought_share={arith: 0.5}"])
    registry.create_session(SESSION, "smoke", config.model_dump(mode="json"))
    trunk = _model(registry, "cognate", "trunk", [], {})
    specialists = [_model(registry, "cognate", s, [trunk], {}) for s in ("a", "b")]
    champion = _model(registry, "evomerge", "champion", specialists, {})
    _model(registry, "bitnet", "ternary", [champion], {"size_mb": 0.21, "packed_file": "model.tq1_0.safetensors",
                                                        "baked_prompts": ["builtin:tools"]})
    after = {"perplexity": 3.5, "accuracy": 0.37, "bits_per_byte": 0.6, "extra": EXTRA}
    registry.upsert_phase_run(SESSION, "bitnet", phase_index=3, status="completed", after_json=after,
                              output_models_json=[f"{SESSION}__bitnet__ternary"])
    return registry


def test_card_holds_lineage_data_accuracy_size_and_license(registry: ModelRegistry) -> None:
    card = gather_card(registry, f"{SESSION}__bitnet__ternary")
    assert [r["name"] for r in card["lineage"]] == ["trunk", "a", "b", "champion"]  # grandparents included
    assert card["model"]["size_mb"] == 0.21 and card["model"]["size_counts"] == "model.tq1_0.safetensors"
    profile = {"ternary_runtime": {"file_bytes": 250_000, "decode_ms_per_token": 1.25}}
    text = render_card(card, profile)
    for name in ("trunk", "champion", "`" + f"{SESSION}__cognate__a" + "`"):
        assert name in text
    assert ("| arith | 0.412 (0.371-0.455), n=500 | 0.217 (0.146-0.310), n=100 | 0.610 (0.520-0.690), n=50 "
            "| 0.000 | 0.050 |") in text
    assert "| mc | 0.333 (0.290-0.378), n=500 | not measured | not measured | 0.317 | 0.322 |" in text
    assert "| all | 0.370 (0.350-0.390), n=1000 |" in text
    assert "Model size 0.210 MB: model.tq1_0.safetensors" in text and "| ternary_runtime | 0.250 | 1.25 |" in text
    assert "mc: accuracy 0.333 (lower 95% bound 0.290) is not distinguishable from the majority baseline" in text
    assert "arith: accuracy" not in text  # its lower bound is above both baselines
    assert "builtin:tools" in text and "{'arith': 0.5}" in text and "preset `smoke`" in text
    assert f"{project_license()} (the license of Agent Forge" in text


def test_license_is_the_package_metadata() -> None:
    meta = importlib.metadata.metadata("agent-forge")
    assert project_license() == (meta.get("License-Expression") or meta.get("License"))


def test_card_without_think_or_record_says_so(registry: ModelRegistry) -> None:
    card = gather_card(registry, f"{SESSION}__evomerge__champion")
    text = render_card(card, {})
    assert "No held-out record for this model" in text
    assert card["model"]["size_counts"].startswith("model.safetensors tensor data")
    card["record"]["after"] = {"accuracy": 0.5, "extra": {"accuracy_code": 0.5}}
    assert "Think mode was not measured" in render_card(card, {})
    assert "outside a registered session" in render_card(None, {})


def test_recorded_kinds_skip_levels_counts_and_rates() -> None:
    assert recorded_kinds(EXTRA) == ["arith", "mc"]
