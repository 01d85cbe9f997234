from pathlib import Path

import pytest

from agent_forge.config import load_config
from agent_forge.config.schema import HandoffRule
from agent_forge.errors import ArtifactCorruptError, HandoffError, NotFoundError
from agent_forge.pipeline import Orchestrator, Phase, PhaseFailedError, PhaseResult
from agent_forge.pipeline.handoff import validate_handoff
from agent_forge.pipeline.phase import ModelRef
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.snapshot import registry_snapshot, snapshot_difference
from agent_forge.storage.workspace import Workspace
from support.tiny_phases import TEST_PHASES, TinyTrainPhase


def _orch(tmp_path: Path, phases=None) -> Orchestrator:
    ws = Workspace(tmp_path / "ws")
    return Orchestrator(ws, ModelRegistry(ws.registry_path), quiet=True, phases=phases or TEST_PHASES)


TEST_RULES = ["handoff.cognate->evomerge.num_models=2", "handoff.cognate->evomerge.required_metadata=[final_loss]",
              "handoff.cognate->evomerge.min_loss_drop=0.5", "handoff.evomerge->quietstar.min_fitness=0.01",
              "handoff.evomerge->quietstar.required_metadata=[fitness]"]


def _config(*overrides: str):
    return load_config("smoke", overrides=[*TEST_RULES, *overrides])


def test_full_run_records_everything(tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    session = orch.create_session(_config())
    summary = orch.run(session)
    assert summary.status == "completed"
    reg = orch.registry
    assert reg.get_session(session)["progress_percent"] == 100.0
    runs = {r["phase_name"]: r for r in reg.phase_runs(session)}
    assert runs["cognate"]["status"] == runs["evomerge"]["status"] == "completed"
    assert runs["cognate"]["after"]["loss"] < runs["cognate"]["before"]["loss"]
    merged = reg.search_models(tag="champion")[0]
    assert len(merged["parents"]) == 2
    assert [h["validation_status"] for h in reg.handoff_history(session)] == ["passed", "passed"]
    assert reg.metrics(session, phase="cognate", name="train/loss")


def test_second_run_skips_completed_phases(tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    session = orch.create_session(_config())
    orch.run(session)
    before = registry_snapshot(orch.registry, session)
    summary = orch.run(session)
    assert summary.status == "completed"
    assert registry_snapshot(orch.registry, session) == before


def test_failed_handoff_stops_and_force_records(tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    config = _config("handoff.cognate->evomerge.min_loss_drop=0.999")
    session = orch.create_session(config)
    with pytest.raises(HandoffError, match="loss_drop"):
        orch.run(session, config=config)
    assert orch.registry.get_session(session)["status"] == "failed"
    summary = orch.run(session, config=config, force=True)
    assert summary.status == "completed"
    statuses = {h["source_phase"]: (h["validation_status"], h["forced"]) for h in orch.registry.handoff_history()}
    assert statuses["cognate"] == ("forced", True)


def test_window_and_missing_input(tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    session = orch.create_session(_config())
    with pytest.raises(NotFoundError, match="has not completed"):
        orch.run(session, start="evomerge")
    summary = orch.run(session, stop="cognate")
    assert summary.status == "partial"
    with pytest.raises(NotFoundError, match="unknown phase"):
        orch.run(session, start="bogus")
    with pytest.raises(NotFoundError, match="empty"):
        orch.run(session, start="evomerge", stop="cognate")
    assert orch.run(session, start="evomerge").status == "completed"


class BrokenPhase(Phase):
    name = "cognate"
    expected_inputs = 0

    def run(self, ctx, inputs):
        raise ZeroDivisionError("boom")


def test_phase_exception_marks_failed(tmp_path: Path) -> None:
    orch = _orch(tmp_path, {"cognate": BrokenPhase})
    session = orch.create_session(_config())
    with pytest.raises(PhaseFailedError, match="ZeroDivisionError: boom"):
        orch.run(session)
    run = orch.registry.phase_runs(session)[0]
    assert run["status"] == "failed" and "boom" in run["error"]
    assert orch.registry.get_session(session)["status"] == "failed"


class InterruptedPhase(Phase):
    name = "cognate"
    expected_inputs = 0

    def run(self, ctx, inputs):
        raise KeyboardInterrupt


def test_ctrl_c_marks_paused(tmp_path: Path) -> None:
    orch = _orch(tmp_path, {"cognate": InterruptedPhase})
    session = orch.create_session(_config())
    with pytest.raises(KeyboardInterrupt):
        orch.run(session)
    assert orch.registry.get_session(session)["status"] == "paused"


class Killed(BaseException):
    """Stands for SIGKILL: nothing after the raising line runs, no handler catches it."""


def test_a_kill_as_a_phase_is_marked_completed_loses_none_of_its_metric_rows(tmp_path: Path, monkeypatch) -> None:
    reference = _orch(tmp_path / "reference")
    expected_session = reference.create_session(_config())
    reference.run(expected_session)
    orch = _orch(tmp_path / "victim")
    session = orch.create_session(_config())
    mark_completed = ModelRegistry.upsert_phase_run

    def killed_once_marked(registry, session_id, phase_name, **fields):
        mark_completed(registry, session_id, phase_name, **fields)
        if phase_name == "cognate" and fields.get("status") == "completed":
            raise Killed

    monkeypatch.setattr(ModelRegistry, "upsert_phase_run", killed_once_marked)
    with pytest.raises(Killed):
        orch.run(session)
    monkeypatch.setattr(ModelRegistry, "upsert_phase_run", mark_completed)
    orch.run(session)  # the resume skips the completed cognate phase
    assert snapshot_difference(registry_snapshot(reference.registry, expected_session),
                               registry_snapshot(orch.registry, session)) == {}


class PickyPhase(TinyTrainPhase):
    expected_inputs = 1


def test_invalid_input_count(tmp_path: Path) -> None:
    orch = _orch(tmp_path, {"cognate": PickyPhase})
    session = orch.create_session(_config())
    with pytest.raises(HandoffError, match="expects 1 input"):
        orch.run(session)


def test_handoff_rules_cover_every_check() -> None:
    config = load_config("spec25m")
    refs = [ModelRef("a", Path("."), {"specialization": "r", "final_loss": 1.0, "seed": 1, "loss_drop": 0.8},
                     parameters=25_000_000)]
    result = PhaseResult(True, "cognate", refs, {})
    outcome = validate_handoff("cognate", "evomerge", config.handoff["cognate->evomerge"], result)
    assert not outcome.passed and outcome.failures() == ["expected 3 model(s), got 1"]
    rule = config.handoff["bitnet->forge"]
    bad = PhaseResult(True, "bitnet", [ModelRef("b", Path("."), {"compression_ratio": 3.0}, size_mb=30)],
                      {"accuracy_retention": 0.9, "size_mb": 30.0})
    failures = validate_handoff("bitnet", "forge", rule, bad).failures()
    assert any("compression_ratio 3 must be >= 7" in f for f in failures)
    assert any("size_mb 30 must be <= 20" in f for f in failures)
    missing = validate_handoff("bitnet", "forge", rule, PhaseResult(True, "bitnet", [ModelRef("c", Path("."))], {}))
    assert any("was not measured" in f for f in missing.failures())
    assert validate_handoff("x", "y", None, bad).passed


def test_per_kind_accuracy_rules_read_each_models_own_figures() -> None:
    rule = HandoffRule(min_accuracy_by_kind={"mc": 0.38, "code": 0.9})
    good = ModelRef("a", Path("."), {"accuracy_mc": 0.41, "accuracy_code": 0.99})
    weak = ModelRef("b", Path("."), {"accuracy_mc": 0.30, "accuracy_code": 0.99})
    unmeasured = ModelRef("c", Path("."), {"accuracy_mc": 0.41})
    outcome = validate_handoff("cognate", "evomerge", rule, PhaseResult(True, "cognate", [good, weak, unmeasured], {}))
    assert [c["check"] for c in outcome.checks[:2]] == ["min_accuracy_by_kind:mc", "min_accuracy_by_kind:code"]
    assert outcome.failures() == ["model 1: accuracy_mc 0.3 must be >= 0.38",
                                  "model 2: 'accuracy_code' was not measured"]


def test_a_phase_of_a_completed_session_without_rerun_leaves_the_session_as_it_was(tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    session = orch.create_session(_config())
    orch.run(session)
    before = orch.registry.get_session(session)
    summary = orch.run(session, start="evomerge", stop="evomerge")  # `agent-forge phase evomerge --session S`
    after = orch.registry.get_session(session)
    assert summary.status == "completed" and after["status"] == "completed"
    assert after["end_time"] == before["end_time"] and after == before


def test_rerun_runs_a_completed_phase_again_and_keeps_the_session_completed(tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    session = orch.create_session(_config())
    orch.run(session)
    started = {r["phase_name"]: r["started_at"] for r in orch.registry.phase_runs(session)}
    summary = orch.run(session, start="cognate", stop="cognate", rerun=("cognate",))
    runs = {r["phase_name"]: r for r in orch.registry.phase_runs(session)}
    assert runs["cognate"]["started_at"] != started["cognate"] and runs["cognate"]["status"] == "completed"
    assert runs["evomerge"]["started_at"] == started["evomerge"]
    assert summary.status == "completed" and orch.registry.get_session(session)["status"] == "completed"


def test_a_corrupt_stored_output_names_the_exact_recovery_and_never_leaves_the_session_running(
        tmp_path: Path) -> None:
    orch = _orch(tmp_path)
    session = orch.create_session(_config())
    orch.run(session, stop="cognate")
    model = orch.registry.search_models(phase="cognate", session=session)[0]
    weights = next(p for p in Path(model["model_path"]).iterdir() if p.suffix == ".safetensors")
    weights.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    with pytest.raises(ArtifactCorruptError) as info:
        orch.run(session)
    assert f"`agent-forge phase cognate --session {session} --force`" in str(info.value)
    assert orch.registry.get_session(session)["status"] == "failed"
    orch.run(session, start="cognate", stop="cognate", rerun=("cognate",))  # what the message says
    assert orch.run(session).status == "completed"  # then `agent-forge resume SESSION`
