"""MuGrokConfig: the D11 presets and validation that names the offending field."""

from __future__ import annotations

import dataclasses

import pytest

from agent_forge.optim import MuGrokConfig

# Decision D11 (docs: docs/decisions.md): muon lr, fallback lr, lambda, tau, KL coefficient.
D11 = {
    "1": (1e-3, 1e-3, 0.3, 30.0, 0.0),
    "3_thought_sft": (1e-4, 1e-4, 0.2, 30.0, 0.0),
    "3_rl": (5e-4, 5e-4, 0.1, 25.0, 0.1),
    "4": (1e-4, 1e-4, 2.0, 30.0, 0.0),
    "5": (1e-3, 1e-3, 2.0, 30.0, 0.0),
    "6": (1e-4, 1e-4, 0.2, 30.0, 0.0),
}


@pytest.mark.parametrize("phase", sorted(D11))
def test_presets_follow_d11(phase: str) -> None:
    config = MuGrokConfig.from_phase(phase)
    numbers = (
        config.muon_lr,
        config.fallback_lr,
        config.grokfast_lambda,
        config.qk_clip_tau,
        config.kl_coefficient,
    )
    assert numbers == D11[phase]
    assert config.grokfast_alpha == 0.98 and config.grokfast_active
    assert 3 <= config.ns_steps <= 5 and 0.9 <= config.momentum <= 0.95
    assert config.weight_decay == 0.05 and config.ns_coefficients == (3.4445, -4.7750, 2.0315)


@pytest.mark.parametrize(
    ("phase", "key"),
    [(1, "1"), (3, "3_thought_sft"), ("3_bake", "3_thought_sft"), (4, "4"), (5, "5"), (6, "6"), (" 3_RL ", "3_rl")],
)
def test_int_and_loose_string_phases(phase: int | str, key: str) -> None:
    assert MuGrokConfig.from_phase(phase) == MuGrokConfig.from_phase(key)


@pytest.mark.parametrize("phase", [2, 7, 8, "3_sft", ""])
def test_phases_without_training_have_no_preset(phase: int | str) -> None:
    with pytest.raises(ValueError, match="phase"):
        MuGrokConfig.from_phase(phase)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("muon_lr", 0.0),
        ("muon_lr", float("nan")),
        ("fallback_lr", -1e-3),
        ("grokfast_alpha", 1.0),
        ("grokfast_alpha", -0.1),
        ("grokfast_lambda", -0.5),
        ("qk_clip_tau", 0.0),
        ("kl_coefficient", -0.1),
        ("ns_steps", 0),
        ("ns_steps", 100),
        ("ns_steps", 2.5),
        ("ns_coefficients", (3.4445, -4.7750)),
        ("ns_eps", 0.0),
        ("ns_dtype", "int8"),
        ("momentum", 1.0),
        ("weight_decay", -0.01),
        ("fallback_weight_decay", float("inf")),
        ("fallback_betas", (0.9, 1.0)),
        ("fallback_eps", 0.0),
    ],
)
def test_impossible_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        dataclasses.replace(MuGrokConfig(), **{field: value})


def test_switches_off_cleanly() -> None:
    assert not MuGrokConfig(grokfast=False).grokfast_active
    assert not MuGrokConfig(grokfast_lambda=0.0).grokfast_active
    assert MuGrokConfig(qk_clip_tau=None).qk_clip_tau is None


def test_scaled_multiplies_both_rates_and_replaces_other_fields() -> None:
    base = MuGrokConfig.from_phase("4")
    scaled = base.scaled(30.0, grokfast=False)
    assert scaled.muon_lr == pytest.approx(base.muon_lr * 30)
    assert scaled.fallback_lr == pytest.approx(base.fallback_lr * 30)
    assert scaled.grokfast is False and scaled.grokfast_lambda == base.grokfast_lambda
    assert base.scaled(1.0) == base
