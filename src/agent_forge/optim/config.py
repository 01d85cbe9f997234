"""MuonGrokfast hyperparameters and the per-phase presets of decision D11.

A frozen dataclass so a preset cannot drift by accident; ``dataclasses.replace(config, field=value)`` makes a
changed copy and re-runs the validation, so an impossible value fails at construction with the field named.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any, Literal

NS_QUINTIC: tuple[float, float, float] = (3.4445, -4.7750, 2.0315)
NS_DTYPES: tuple[str, ...] = ("bfloat16", "float32", "float64")
PHASE_KEYS: tuple[str, ...] = ("1", "3_thought_sft", "3_rl", "4", "5", "6")
# Phase 3's supervised thought training was keyed "3_bake" before "bake" was left to Phase 6
OLD_PHASE_KEYS: dict[str, str] = {"3": "3_thought_sft", "3_bake": "3_thought_sft"}


@dataclass(frozen=True)
class MuGrokConfig:
    """Everything the optimizer needs; defaults are the Phase 1 preset.

    ``kl_coefficient`` is not used by the optimizer: it travels with the preset because D11 ties it to the
    same phase settings, and the phase's loss reads it from here.
    """

    muon_lr: float = 1e-3
    fallback_lr: float = 1e-3
    grokfast: bool = True
    grokfast_alpha: float = 0.98
    grokfast_lambda: float = 0.3
    qk_clip_tau: float | None = 30.0
    kl_coefficient: float = 0.0
    ns_steps: int = 5
    ns_coefficients: tuple[float, float, float] = NS_QUINTIC
    ns_eps: float = 1e-7
    ns_dtype: Literal["bfloat16", "float32", "float64"] = "bfloat16"
    momentum: float = 0.95
    nesterov: bool = True
    weight_decay: float = 0.05
    fallback_weight_decay: float = 0.05
    fallback_betas: tuple[float, float] = (0.9, 0.95)
    fallback_eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_finite(self)
        _check_rates(self)
        _check_newton_schulz(self)
        _check_fallback(self)

    @property
    def grokfast_active(self) -> bool:
        """The filter is skipped entirely (no EMA state) when switched off or when lambda is 0."""
        return self.grokfast and self.grokfast_lambda > 0.0

    def scaled(self, lr_scale: float, **changes: Any) -> MuGrokConfig:
        """This preset with both learning rates times ``lr_scale`` (a preset's measured adjustment of D11's
        rates) and any other fields replaced."""
        return dataclasses.replace(self, muon_lr=self.muon_lr * lr_scale, fallback_lr=self.fallback_lr * lr_scale,
                                   **changes)

    @classmethod
    def from_phase(cls, phase: int | str) -> MuGrokConfig:
        """The D11 preset for a training phase: "1", "3_thought_sft", "3_rl", "4", "5", "6" (3 = "3_thought_sft")."""
        key = str(phase).strip().lower()
        key = OLD_PHASE_KEYS.get(key, key)
        if key not in _PRESETS:
            choices = ", ".join(PHASE_KEYS)
            raise ValueError(f"phase: no optimizer preset for {phase!r}; choose one of {choices}")
        return cls(**_PRESETS[key])


# D11. Muon and fallback lr, Grokfast alpha/lambda, QK-clip tau and KL coefficient are the table's numbers.
# Newton-Schulz steps 5 and momentum 0.95 sit inside the 3-5 / 0.9-0.95 ranges D11 gives for Phase 1 (five
# steps bring every singular value above ~1% of the Frobenius norm into the quintic's band; three do not);
# weight decay 0.05 is the spec's Phase 1 value, kept for every phase until a measurement says otherwise.
_PRESETS: dict[str, dict[str, float]] = {
    "1": {"muon_lr": 1e-3, "fallback_lr": 1e-3, "grokfast_lambda": 0.3, "qk_clip_tau": 30.0},
    "3_thought_sft": {"muon_lr": 1e-4, "fallback_lr": 1e-4, "grokfast_lambda": 0.2, "qk_clip_tau": 30.0},
    "3_rl": {
        "muon_lr": 5e-4,
        "fallback_lr": 5e-4,
        "grokfast_lambda": 0.1,
        "qk_clip_tau": 25.0,
        "kl_coefficient": 0.1,
    },
    "4": {"muon_lr": 1e-4, "fallback_lr": 1e-4, "grokfast_lambda": 2.0, "qk_clip_tau": 30.0},
    "5": {"muon_lr": 1e-3, "fallback_lr": 1e-3, "grokfast_lambda": 2.0, "qk_clip_tau": 30.0},
    "6": {"muon_lr": 1e-4, "fallback_lr": 1e-4, "grokfast_lambda": 0.2, "qk_clip_tau": 30.0},
}


def _fail(field: str, value: object, rule: str) -> None:
    raise ValueError(f"{field}: {value!r} is invalid; it must be {rule}")


def _check_finite(config: MuGrokConfig) -> None:
    for item in fields(config):
        value = getattr(config, item.name)
        numbers = value if isinstance(value, tuple) else (value,)
        for number in numbers:
            if isinstance(number, float) and not math.isfinite(number):
                _fail(item.name, value, "finite")


def _check_rates(config: MuGrokConfig) -> None:
    if config.muon_lr <= 0:
        _fail("muon_lr", config.muon_lr, "> 0")
    if config.fallback_lr <= 0:
        _fail("fallback_lr", config.fallback_lr, "> 0")
    if not 0.0 <= config.grokfast_alpha < 1.0:
        _fail("grokfast_alpha", config.grokfast_alpha, "in [0, 1)")
    if config.grokfast_lambda < 0:
        _fail("grokfast_lambda", config.grokfast_lambda, ">= 0")
    if config.qk_clip_tau is not None and config.qk_clip_tau <= 0:
        _fail("qk_clip_tau", config.qk_clip_tau, "> 0, or None to switch QK-clip off")
    if config.kl_coefficient < 0:
        _fail("kl_coefficient", config.kl_coefficient, ">= 0")
    if config.weight_decay < 0:
        _fail("weight_decay", config.weight_decay, ">= 0")
    if config.fallback_weight_decay < 0:
        _fail("fallback_weight_decay", config.fallback_weight_decay, ">= 0")


def _check_newton_schulz(config: MuGrokConfig) -> None:
    steps = config.ns_steps
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps < 100:
        _fail("ns_steps", config.ns_steps, "an integer in [1, 99]")
    if len(config.ns_coefficients) != 3:
        _fail("ns_coefficients", config.ns_coefficients, "three numbers (a, b, c)")
    if config.ns_eps <= 0:
        _fail("ns_eps", config.ns_eps, "> 0")
    if config.ns_dtype not in NS_DTYPES:
        _fail("ns_dtype", config.ns_dtype, f"one of {NS_DTYPES}")
    if not 0.0 <= config.momentum < 1.0:
        _fail("momentum", config.momentum, "in [0, 1)")


def _check_fallback(config: MuGrokConfig) -> None:
    betas = config.fallback_betas
    if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
        _fail("fallback_betas", betas, "two numbers in [0, 1)")
    if config.fallback_eps <= 0:
        _fail("fallback_eps", config.fallback_eps, "> 0")
