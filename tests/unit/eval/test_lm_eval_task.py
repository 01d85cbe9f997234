"""Issue 24 point 2: the items of `agent-forge eval` as an lm-evaluation-harness task, read by lm-eval itself.

lm-eval scores a loglikelihood item by encoding prompt + target together and cutting at the prompt's
length; our exact match encodes them apart. The tokens must be the same for every built-in item, and
lm-eval must turn each document into exactly (prompt, answer + <eos>). The run of lm_eval on a forged model
against `agent-forge eval`: tests/e2e/test_lm_eval_harness.py (slow).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from agent_forge.config import load_config
from agent_forge.data.dataset import encode_examples
from agent_forge.data.sources import heldout_examples
from agent_forge.data.tokenizer import train_tokenizer
from agent_forge.eval.lm_eval_task import TASK_NAME, lm_eval_command, write_lm_eval_task
from agent_forge.eval.suite import select_examples


@pytest.fixture(scope="module")
def examples():
    return select_examples(heldout_examples(load_config("smoke")), n=60)


def test_the_task_files(examples, tmp_path: Path) -> None:
    config_file = write_lm_eval_task(examples, tmp_path / "task")
    config = yaml.safe_load(config_file.read_text())
    assert config["task"] == TASK_NAME and config["output_type"] == "loglikelihood"
    assert config["target_delimiter"] == "" and config["metric_list"][0]["metric"] == "acc"
    rows = [json.loads(line) for line in Path(config["dataset_kwargs"]["data_files"]["test"]).read_text().splitlines()]
    assert [(r["prompt"], r["target"], r["uid"]) for r in rows] == [(e.prompt, e.answer + "<eos>", e.uid)
                                                                   for e in examples]
    command = lm_eval_command(tmp_path / "model", tmp_path / "task", 128)
    assert f"pretrained={(tmp_path / 'model').resolve()},trust_remote_code=True,max_length=127" in command
    assert f"--include_path {(tmp_path / 'task').resolve()} --tasks {TASK_NAME}" in command


def test_joint_and_separate_encodings_cut_at_the_same_token(examples) -> None:
    """What lm-eval's _encode_pair does for a causal model, against our encode_examples."""
    tokenizer = train_tokenizer([e.prompt + e.answer for e in examples] * 3, 512)
    for example, ours in zip(examples, encode_examples(tokenizer, examples), strict=True):
        whole = tokenizer.encode(example.prompt + example.answer + "<eos>", bos=True)
        context = tokenizer.encode(example.prompt, bos=True)
        assert (whole[: len(context)], whole[len(context):]) == (ours[: len(context)], ours[len(context):])


def test_lm_eval_reads_the_task_as_prompt_and_target(examples, tmp_path: Path) -> None:
    tasks = pytest.importorskip("lm_eval.tasks")
    write_lm_eval_task(examples, tmp_path)
    manager = tasks.TaskManager(include_path=str(tmp_path), include_defaults=False)
    task = tasks.get_task_dict([TASK_NAME], manager)[TASK_NAME]
    task.build_all_requests(rank=0, world_size=1)
    pairs = sorted(instance.arguments for instance in task.instances)
    assert pairs == sorted((e.prompt, e.answer + "<eos>") for e in examples)
    assert {instance.request_type for instance in task.instances} == {"loglikelihood"}
