"""Phase 3 on the smoke preset: baking, Quiet-STaR, a stored reasoner with its mixing head and figures."""

from __future__ import annotations

import json
import math

import torch

from agent_forge.config import load_config
from agent_forge.data.dataset import IGNORE_LABEL
from agent_forge.model_io import load_model, load_tokenizer
from agent_forge.phases.common import session_data
from agent_forge.phases.quietstar import THINKING_TOKENS, QuietStarPhase, thought_sft_token_lists
from agent_forge.pipeline.handoff import validate_handoff
from agent_forge.reasoning.mixing import MixingHead
from support.phase_harness import make_context, seed_model


def run_phase(tmp_path):
    ref = seed_model(tmp_path, "evomerge", name="champion", metadata={"fitness": 1.0, "merge_technique": "x"})
    ctx = make_context(tmp_path, "quietstar")
    return ref, ctx, QuietStarPhase().run(ctx, [ref])


def test_quietstar_bakes_trains_and_stores_a_reasoner(tmp_path):
    parent, _, result = run_phase(tmp_path)
    assert result.success and len(result.models) == 1
    ref = result.models[0]
    meta = ref.metadata
    assert isinstance(meta["coherence_score"], float) and isinstance(meta["validity_rate"], float)
    assert 0.0 <= meta["validity_rate"] <= 1.0 and 0.0 <= meta["coherence_score"] <= 1.0
    assert meta["parents"] == [parent.model_id]
    metrics = result.metrics
    assert metrics["bake/final_loss"] < metrics["bake/first_loss"]
    assert all(metrics[f"bake/examples_{s}"] > 0 for s in ("mece", "falsification", "multi_domain"))
    for key in (
        "phase/validity_rate",
        "phase/avg_coherence",
        "phase/accuracy_with_thoughts",
        "phase/accuracy_without_thoughts",
        "phase/qs_ll_gain",
        "phase/ms_per_thought",
        "convergence/validity_rate",
        "before/loss",
        "after/loss",
    ):
        assert math.isfinite(metrics[key]), key
    model, tokenizer = load_model(ref), load_tokenizer(ref)
    assert all(tokenizer.encode(t) == [tokenizer.special_id(t)] for t in THINKING_TOKENS)
    parent_model = load_model(parent)
    changed = any(
        not torch.equal(a, b)
        for a, b in zip(model.state_dict().values(), parent_model.state_dict().values(), strict=True)
    )
    assert changed
    head = MixingHead.load(ref.path)
    assert head.hidden_size == model.config.hidden_size
    report = json.loads((ref.path / "quietstar_report.json").read_text())
    assert report["samples"] and "validity_rate" in json.dumps(report["metrics"])
    assert result.before.loss is not None and result.after.loss is not None
    assert_spec25m_handoff_reads_measured_values(result)


def assert_spec25m_handoff_reads_measured_values(result) -> None:
    """spec25m's quietstar->bitnet rule (min_accuracy) finds the D6 accuracy Phase 3 records, so it passes
    or fails on the figure, never on a missing key."""
    rule = load_config("spec25m").handoff["quietstar->bitnet"]
    outcome = validate_handoff("quietstar", "bitnet", rule, result)
    assert result.models[0].metadata["accuracy"] == result.after.accuracy
    assert not [m for m in outcome.failures() if "not measured" in m or "missing" in m], outcome.failures()
    accuracy_check = next(c for c in outcome.checks if c["check"] == "min_accuracy")
    assert accuracy_check["value"] == result.after.accuracy and accuracy_check["passed"] == (
        result.after.accuracy >= rule.min_accuracy)


def test_quietstar_rerun_resumes_to_the_same_reasoner(tmp_path):
    parent, _, first = run_phase(tmp_path)
    again = QuietStarPhase().run(make_context(tmp_path, "quietstar"), [parent])
    assert again.models[0].model_id == first.models[0].model_id
    assert again.metrics["rl/final_loss"] == first.metrics["rl/final_loss"]


def test_thought_training_rows_keep_the_tool_demonstrations(tmp_path):
    """The thought SFT data holds the session's tool demonstrations (calls scored, tool results not) beside
    the thoughts, so Phase 3 does not teach thoughts over calls."""
    ctx = make_context(tmp_path, "quietstar")
    tokenizer = session_data(ctx).tokenizer
    ids, labels, counts = thought_sft_token_lists(ctx, tokenizer, ctx.phase_config)
    expected = round((counts["bake/reasoning_examples"] + counts["bake/plain_examples"]) * 0.1)
    assert counts["bake/tool_demos"] == expected > 0
    tool, result = tokenizer.special_id("<tool>"), tokenizer.special_id("<result>")
    demos = [(row, lab) for row, lab in zip(ids, labels, strict=True) if tool in row]
    assert len(demos) >= expected
    think = tokenizer.special_id("<think>")
    for row, lab in demos:  # the prompt's own <tool> example is read; the call after <think> is scored
        call = row.index(tool, row.index(think))
        assert lab[row.index(tool)] == IGNORE_LABEL and lab[call] == tool
        assert lab[row.index(result, call)] == IGNORE_LABEL
    thoughts = [(row, lab) for row, lab in zip(ids, labels, strict=True) if tool not in row and row == lab]
    assert len(thoughts) >= counts["bake/reasoning_examples"]
