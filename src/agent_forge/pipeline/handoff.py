"""Hand-off validation between phases (spec 3.1.4), with the rules as data from the preset."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent_forge.config.schema import HandoffRule
from agent_forge.pipeline.phase import PhaseResult

_MIN_CHECKS = {
    "min_fitness": "fitness",
    "min_accuracy": "accuracy",
    "min_compression_ratio": "compression_ratio",
    "min_loss_drop": "loss_drop",
}
_MAX_CHECKS = {
    "max_size_mb": "size_mb",
    "max_latency_ms": "latency_ms",
    "max_ppl_increase": "ppl_increase",
}


@dataclass
class HandoffOutcome:
    """Every check with its measured value and limit; ``passed`` only when all passed."""

    source: str
    target: str
    checks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c["passed"] for c in self.checks)

    def failures(self) -> list[str]:
        return [c["message"] for c in self.checks if not c["passed"]]

    def summary(self) -> str:
        return "; ".join(self.failures()) if not self.passed else "all hand-off checks passed"


def _lookup(key: str, metadata: dict[str, Any], metrics: dict[str, Any]) -> Any:
    """A model's own metadata first, then the phase's metrics."""
    return metadata.get(key, metrics.get(key))


def _check(name: str, value: Any, limit: Any, ok: bool, text: str) -> dict[str, Any]:
    return {"check": name, "value": value, "limit": limit, "passed": bool(ok), "message": text}


def _bound_checks(rule: HandoffRule, metadata: dict[str, Any], metrics: dict[str, Any], i: int) -> list[dict]:
    checks = []
    for field_name, key in {**_MIN_CHECKS, **_MAX_CHECKS}.items():
        limit = getattr(rule, field_name)
        if limit is None:
            continue
        value = _lookup(key, metadata, metrics)
        if not isinstance(value, (int, float)):
            checks.append(_check(field_name, None, limit, False, f"model {i}: '{key}' was not measured"))
            continue
        ok = value >= limit if field_name in _MIN_CHECKS else value <= limit
        relation = ">=" if field_name in _MIN_CHECKS else "<="
        checks.append(_check(field_name, value, limit, ok, f"model {i}: {key} {value:.4g} must be {relation} {limit}"))
    return checks


def _kind_checks(rule: HandoffRule, metadata: dict[str, Any], metrics: dict[str, Any], i: int) -> list[dict]:
    """``min_accuracy_by_kind``: the model's D6 accuracy on each named task kind (``accuracy_<kind>``)."""
    checks = []
    for kind, limit in rule.min_accuracy_by_kind.items():
        key, name = f"accuracy_{kind}", f"min_accuracy_by_kind:{kind}"
        value = _lookup(key, metadata, metrics)
        if not isinstance(value, (int, float)):
            checks.append(_check(name, None, limit, False, f"model {i}: '{key}' was not measured"))
            continue
        checks.append(_check(name, value, limit, value >= limit, f"model {i}: {key} {value:.4g} must be >= {limit}"))
    return checks


def validate_handoff(source: str, target: str, rule: HandoffRule | None, result: PhaseResult) -> HandoffOutcome:
    """Apply ``rule`` to the phase's output models and metrics."""
    outcome = HandoffOutcome(source, target)
    if rule is None:
        return outcome
    models = result.models
    if rule.num_models is not None:
        outcome.checks.append(_check("num_models", len(models), rule.num_models, len(models) == rule.num_models,
                                     f"expected {rule.num_models} model(s), got {len(models)}"))
    for i, model in enumerate(models):
        for key in rule.required_metadata:
            present = _lookup(key, model.metadata, result.metrics) is not None
            outcome.checks.append(_check(f"metadata:{key}", present, True, present,
                                         f"model {i}: missing required metadata '{key}'"))
        if rule.param_range is not None:
            low, high = rule.param_range
            outcome.checks.append(_check("param_range", model.parameters, [low, high],
                                         low <= model.parameters <= high,
                                         f"model {i}: {model.parameters} parameters outside [{low}, {high}]"))
        outcome.checks.extend(_bound_checks(rule, model.metadata, result.metrics, i))
        outcome.checks.extend(_kind_checks(rule, model.metadata, result.metrics, i))
    return outcome
