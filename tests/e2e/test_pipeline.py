"""The whole pipeline as a user meets it, on `smoke`: eight phases, the trajectory table, bundle and report."""

from __future__ import annotations

import json

import pytest

from agent_forge.config import PHASE_NAMES
from agent_forge.storage.registry import ModelRegistry
from support.e2e import SESSION, agent_forge


def test_all_eight_phases_complete_with_summary(smoke_run):
    workspace, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    for name in PHASE_NAMES:
        assert name in proc.stdout
    assert "bundle:" in proc.stdout and "report:" in proc.stdout
    registry = ModelRegistry(workspace / "registry" / "model_registry.db")
    assert registry.get_session(SESSION)["status"] == "completed"
    runs = {r["phase_name"]: r for r in registry.phase_runs(SESSION)}
    assert set(runs) == set(PHASE_NAMES) and all(r["status"] == "completed" for r in runs.values())
    statuses = {h["source_phase"]: h["validation_status"] for h in registry.handoff_history(SESSION)}
    assert set(statuses.values()) == {"passed"}, statuses


def test_every_phase_records_before_and_after(smoke_run):
    workspace, _ = smoke_run
    registry = ModelRegistry(workspace / "registry" / "model_registry.db")
    for run in registry.phase_runs(SESSION):
        metrics = run["metrics"]
        assert any(k.startswith("before/") for k in metrics), run["phase_name"]
        assert any(k.startswith("after/") for k in metrics), run["phase_name"]


def test_final_model_lineage_reaches_phase_one(smoke_run):
    workspace, _ = smoke_run
    registry = ModelRegistry(workspace / "registry" / "model_registry.db")
    final = [m for m in registry.search_models(session=SESSION) if m["phase_name"] == "final"]
    assert len(final) == 1
    seen, frontier = set(), [final[0]["model_id"]]
    while frontier:
        model = registry.get_model(frontier.pop())
        seen.add(model["phase_name"])
        frontier.extend(model["parents"])
    assert set(PHASE_NAMES) <= seen


def test_status_json_after_the_run(smoke_run):
    workspace, _ = smoke_run
    proc = agent_forge(workspace, "status", SESSION, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["session"]["status"] == "completed"


def expected_checks(rule) -> set[str]:
    """The check every field a rule sets must produce: a set field without its check would be skipped."""
    expected = set()
    for name, value in rule.model_dump(exclude_defaults=True).items():
        if name == "required_metadata":
            expected |= {f"metadata:{key}" for key in value}
        elif name == "min_accuracy_by_kind":
            expected |= {f"min_accuracy_by_kind:{kind}" for kind in value}
        else:
            expected.add(name)
    return expected


@pytest.mark.parametrize("preset", ["tiny", "smoke", "spec25m"])
def test_every_presets_handoff_rules_are_evaluable_on_a_real_run(smoke_run, preset):
    """Each rule of each preset reads keys that the phases really write (metadata or metrics): none
    would fail as 'not measured', and none is skipped (every field a rule sets yields a check on every
    model, and every rule sits between two consecutive phases), whatever its threshold."""
    from agent_forge.config import load_config
    from agent_forge.pipeline.handoff import validate_handoff
    from agent_forge.pipeline.phase import PhaseResult
    from agent_forge.storage.artifacts import ModelRef

    workspace, _ = smoke_run
    registry = ModelRegistry(workspace / "registry" / "model_registry.db", readonly=True)
    runs = {r["phase_name"]: r for r in registry.phase_runs(SESSION)}
    edges = {f"{a}->{b}" for a, b in zip(PHASE_NAMES, [*PHASE_NAMES[1:], "output"], strict=True)}
    rules = load_config(preset).handoff
    assert set(rules) <= edges, (preset, set(rules) - edges)  # a misspelt edge would never be applied
    for edge, rule in rules.items():
        source = edge.split("->")[0]
        outputs = [m for m in registry.search_models(session=SESSION, phase=source) if "trunk" not in m["tags"]]
        refs = [ModelRef(m["model_id"], workspace, m["metadata"], m["parameters"] or 0) for m in outputs]
        result = PhaseResult(True, source, refs, runs[source]["metrics"])
        outcome = validate_handoff(source, edge.split("->")[1], rule, result)
        unmeasured = [c["message"] for c in outcome.checks
                      if "not measured" in c["message"] or (c["check"].startswith("metadata:") and not c["passed"])]
        assert not unmeasured, (preset, edge, unmeasured)
        assert outcome.checks, (preset, edge)
        for i in range(len(refs)):  # every set field of the rule was checked on every model
            checked = {c["check"] for c in outcome.checks
                       if c["check"] == "num_models" or c["message"].startswith(f"model {i}:")}
            assert expected_checks(rule) <= checked, (preset, edge, i, expected_checks(rule) - checked)
