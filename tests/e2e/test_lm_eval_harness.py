"""Issue 24 point 2: lm-evaluation-harness scores a forged model of a real run as `agent-forge eval` does.

`agent-forge eval MODEL --lm-eval-task DIR` writes the items it scored as a local lm-eval task and prints
the lm_eval command; run as printed (offline: the data is a local file, the model the folder's own code),
lm_eval must give the same accuracy on the same items, item by item. Slow: lm_eval's start-up alone takes
tens of seconds, and the run of README "Scoring with lm-evaluation-harness" measures the same thing.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from agent_forge.data.tasks import TaskExample
from agent_forge.eval.lm_eval_task import TASK_NAME
from agent_forge.eval.suite import direct_results
from agent_forge.model_io import load_model, load_ref, load_tokenizer
from agent_forge.storage.registry import ModelRegistry
from support.e2e import SESSION, agent_forge

pytestmark = pytest.mark.slow


def test_lm_eval_scores_the_forged_model_as_agent_forge_eval_does(smoke_run, tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    workspace, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    registry = ModelRegistry(workspace / "registry" / "model_registry.db", readonly=True)
    model_id = registry.search_models(session=SESSION, phase="forge")[-1]["model_id"]
    seq_len, ref = registry.session_config(SESSION).data.seq_len, load_ref(registry, model_id)
    registry.close()
    ours = agent_forge(workspace, "eval", model_id, "--n", "60", "--lm-eval-task", str(tmp_path / "task"), "--json")
    assert ours.returncode == 0, ours.stderr[-3000:]
    report = json.loads(ours.stdout)
    command = shlex.split(report["lm_eval"]["command"])
    lm_eval = str(Path(sys.executable).with_name("lm_eval"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    run = subprocess.run([lm_eval, *command[1:], "--output_path", str(tmp_path / "out"), "--log_samples"],
                         capture_output=True, text=True, env=env, timeout=1200, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads(next((tmp_path / "out").rglob("results_*.json")).read_text())
    samples = [json.loads(line) for line in next((tmp_path / "out").rglob("samples_*.jsonl")).read_text().splitlines()]
    assert len(samples) == report["n"] == 60
    assert sum(s["acc"] for s in samples) == report["overall"]["correct"]
    assert results["results"][TASK_NAME]["acc,none"] == pytest.approx(report["overall"]["accuracy"], abs=1e-12)
    items = [TaskExample(d["uid"], d["kind"], d["level"], d["prompt"], d["target"].removesuffix("<eos>"))
             for d in (s["doc"] for s in samples)]
    scored, correct = direct_results(load_model(ref), load_tokenizer(ref), items, seq_len)
    assert {e.uid: ok for e, ok in zip(scored, correct, strict=True)} == {s["doc"]["uid"]: bool(s["acc"])
                                                                         for s in samples}
