"""`agent-forge eval` on the models of a real smoke run: every phase's model, the bundle, and bad input."""

from __future__ import annotations

import json

import pytest

from agent_forge.storage.registry import ModelRegistry
from support.e2e import SESSION, agent_forge


def _read(workspace, query):
    """One read of the run's registry, closed at once (the CLI under test opens it too)."""
    registry = ModelRegistry(workspace / "registry" / "model_registry.db", readonly=True)
    try:
        return query(registry)
    finally:
        registry.close()


def _model_of(workspace, phase: str) -> str:
    rows = _read(workspace, lambda r: r.search_models(session=SESSION, phase=phase))
    return rows[-1]["model_id"]


def _after(workspace, phase: str) -> dict:
    return next(run["after"] for run in _read(workspace, lambda r: r.phase_runs(SESSION))
                if run["phase_name"] == phase)


def _eval_json(workspace, *args: str) -> dict:
    proc = agent_forge(workspace, "eval", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_eval_of_the_champion_equals_its_d6_record(smoke_run):
    workspace, _ = smoke_run
    report = _eval_json(workspace, _model_of(workspace, "evomerge"))
    after = _after(workspace, "evomerge")
    assert report["overall"]["accuracy"] == pytest.approx(after["accuracy"])
    for kind, entry in report["kinds"].items():
        assert entry["accuracy"] == pytest.approx(after["extra"][f"accuracy_{kind}"])
        assert entry["ci_low"] <= entry["accuracy"] <= entry["ci_high"]
        assert entry["n"] == sum(level["n"] for level in entry["levels"].values())
    assert report["kinds"]["mc"]["chance"] > 0 and report["kinds"]["arith"]["chance"] == 0


@pytest.mark.parametrize("phase", ["bitnet", "baking", "final"])
def test_eval_of_a_ternary_or_compressed_model_agrees_with_its_phase_record(smoke_run, phase):
    workspace, _ = smoke_run
    report = _eval_json(workspace, _model_of(workspace, phase))
    overall, after = report["overall"], _after(workspace, phase)
    assert overall["ci_low"] <= after["accuracy"] <= overall["ci_high"]


def test_eval_of_the_bundle_agrees_with_the_edge_record(smoke_run):
    workspace, _ = smoke_run
    bundle = next((workspace / "sessions" / SESSION).rglob("manifest.json")).parent
    report = _eval_json(workspace, "--bundle", str(bundle), "--preset", "smoke")
    overall, after = report["overall"], _after(workspace, "edge")
    assert overall["n"] == after["extra"]["accuracy_n"]
    assert overall["ci_low"] <= after["accuracy"] <= overall["ci_high"]


def test_eval_filters_and_stratifies(smoke_run):
    workspace, _ = smoke_run
    report = _eval_json(workspace, _model_of(workspace, "cognate"), "--kinds", "mc,code", "--levels", "1",
                        "--n", "10")
    assert set(report["kinds"]) == {"mc", "code"} and report["n"] == 10
    assert all(set(entry["levels"]) == {"1"} for entry in report["kinds"].values())


def test_tools_mode_on_the_held_out_tool_tasks_reports_their_own_kind(smoke_run):
    workspace, _ = smoke_run
    report = _eval_json(workspace, _model_of(workspace, "baking"), "--mode", "tools", "--data", "tools",
                        "--n", "12")
    assert report["data"] == "tools" and report["n"] == 12 and set(report["kinds"]) == {"tool"}
    figures = report["tools"]["tool"]
    assert figures["call_rate"]["n"] == 12 and 0.0 <= figures["accuracy"]["accuracy"] <= 1.0
    by_tool = {name: entry["accuracy"] for name, entry in report["by_tool"].items()}
    assert set(by_tool) == {"calculator", "convert"} and sum(e["n"] for e in by_tool.values()) == 12
    assert sum(e["correct"] for e in by_tool.values()) == report["kinds"]["tool"]["correct"]
    proc = agent_forge(workspace, "eval", _model_of(workspace, "baking"), "--mode", "tools", "--data", "tools",
                       "--n", "12")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "calculator tasks: accuracy" in proc.stdout and "convert tasks: accuracy" in proc.stdout


def test_eval_prints_a_table_with_intervals(smoke_run):
    workspace, _ = smoke_run
    proc = agent_forge(workspace, "eval", _model_of(workspace, "cognate"))
    assert proc.returncode == 0, proc.stderr
    assert "95% CI" in proc.stdout and "chance" in proc.stdout and "majority" in proc.stdout


def test_think_mode_reports_thinking_direct_and_corrupted_on_the_same_tasks(smoke_run):
    workspace, _ = smoke_run
    report = _eval_json(workspace, _model_of(workspace, "quietstar"), "--mode", "think", "--kinds", "arith",
                        "--n", "20")
    assert report["mode"] == "think" and report["n"] == 20 == report["direct"]["overall"]["n"]
    figures = report["thinking"]["overall"]
    assert 0.0 <= figures["validity_rate"] <= figures["think_rate"] <= 1.0
    assert report["corrupted_thoughts"]["overall"]["n"] == 20
    if figures["think_rate"] == 0.0:  # a model that never thinks scores exactly its direct answers
        assert report["overall"]["correct"] == report["direct"]["overall"]["correct"]


def test_think_mode_says_when_the_thoughts_call_tools_it_does_not_run(smoke_run):
    workspace, _ = smoke_run
    args = (_model_of(workspace, "baking"), "--mode", "think", "--kinds", "arith", "--n", "10")
    rate = _eval_json(workspace, *args)["thinking"]["overall"]["tool_call_rate"]
    proc = agent_forge(workspace, "eval", *args)
    assert proc.returncode == 0, proc.stderr
    assert ("call a tool, which think mode does not run" in proc.stdout) == (rate > 0.0)


def test_think_mode_of_the_bundle_agrees_with_the_pytorch_model(smoke_run):
    workspace, _ = smoke_run
    bundle = next((workspace / "sessions" / SESSION).rglob("manifest.json")).parent
    args = ("--mode", "think", "--kinds", "arith", "--n", "10")
    report = _eval_json(workspace, "--bundle", str(bundle), "--preset", "smoke", *args)
    torch_report = _eval_json(workspace, _model_of(workspace, "edge"), *args)
    assert report["n"] == 10 and report["thinking"]["overall"]["think_rate"] == pytest.approx(
        torch_report["thinking"]["overall"]["think_rate"], abs=0.2)
    low, high = torch_report["overall"]["ci_low"], torch_report["overall"]["ci_high"]
    assert low <= report["overall"]["accuracy"] <= high


def test_eval_writes_the_items_it_scored_as_an_lm_eval_task(smoke_run, tmp_path):
    """The lm-evaluation-harness run of that task: test_lm_eval_harness.py (slow)."""
    workspace, _ = smoke_run
    model_id = _model_of(workspace, "forge")
    report = _eval_json(workspace, model_id, "--n", "12", "--lm-eval-task", str(tmp_path / "task"))
    rows = (tmp_path / "task" / "agent_forge_heldout.jsonl").read_text().splitlines()
    assert report["lm_eval"]["n"] == report["n"] == len(rows) == 12
    folder = _read(workspace, lambda r: r.get_model(model_id)["model_path"])
    assert f"pretrained={folder},trust_remote_code=True" in report["lm_eval"]["command"]
    assert all(json.loads(row)["target"].endswith("<eos>") for row in rows)


def test_a_larger_held_out_draw_starts_with_the_d6_tasks(smoke_run):
    """``--set data.heldout_examples=N`` scores more tasks of the same split; D6's are among them."""
    workspace, _ = smoke_run
    model = _model_of(workspace, "evomerge")
    d6 = _eval_json(workspace, model, "--kinds", "arith")
    larger = _eval_json(workspace, model, "--kinds", "arith", "--set", "data.heldout_examples=192")
    assert larger["kinds"]["arith"]["n"] == 3 * d6["kinds"]["arith"]["n"] > 0
    from agent_forge.config import load_config
    from agent_forge.data.sources import heldout_examples
    small, big = (heldout_examples(load_config("smoke", overrides=[f"data.heldout_examples={n}"])) for n in (64, 192))
    assert {e.uid for e in small} <= {e.uid for e in big}


@pytest.mark.parametrize("args, words", [
    (["MODEL", "--mode", "think", "--lm-eval-task", "/tmp/x"], "scores direct answers"),
    (["no-such-model"], "does not exist"),
    (["MODEL", "--kinds", "poetry"], "unknown kind"),
    (["MODEL", "--mode", "dream"], "unknown mode"),
    (["MODEL", "--prompt", "builtin:tools"], "--prompt needs --mode"),
    (["MODEL", "--data", "gsm8k:/no/such/file.jsonl"], "no"),
    (["MODEL", "--data", "poems.txt"], "KIND:PATH"),
    (["--bundle", "/no/such/bundle"], "not a bundle"),
    (["MODEL", "--set", "data.seed=3"], "would change the session"),
    (["MODEL", "--set", "data.heldout_examples=8"], "can only grow"),
    ([], "give a model id"),
])
def test_bad_input_to_eval_is_one_line_and_exit_2(smoke_run, args, words):
    workspace, _ = smoke_run
    args = [_model_of(workspace, "cognate") if a == "MODEL" else a for a in args]
    proc = agent_forge(workspace, "eval", *args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
