"""The items of an ``agent-forge eval`` as an lm-evaluation-harness task: the same items, scored the same way.

``write_lm_eval_task`` writes ``<name>.jsonl`` (one item a line: prompt, target, kind, level, uid) and
``<name>.yaml`` into a folder that ``lm_eval --include_path`` reads; the data file is read locally (the
``json`` loader of ``datasets``), so nothing comes from a hub. The task is of lm-eval's ``loglikelihood``
type, whose ``acc`` is lm-eval's ``is_greedy``: every target token is the model's argmax after the prompt and
the target tokens before it, which is this project's teacher-forced exact match (``eval/heldout.py``). The
target is the answer followed by ``<eos>``, because our exact match scores the end of the answer too; the
target delimiter is empty because our answers carry their own leading space.

lm-eval encodes prompt and target together and splits them at the prompt's length, where we encode them
apart; our prompts end in "Answer:" and our answers start with a space, a token boundary either way, so the
tokens are the same. Give ``max_length`` = ``seq_len - 1`` (``lm_eval_command``): lm-eval keeps the last
``max_length + 1`` tokens of a long item, we keep the last ``seq_len``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml

from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import EOS_ID, SPECIAL_TOKENS

TASK_NAME = "agent_forge_heldout"


def task_rows(examples: Sequence[TaskExample]) -> list[dict]:
    """One lm-eval document per example."""
    eos = SPECIAL_TOKENS[EOS_ID]
    return [{"prompt": e.prompt, "target": e.answer + eos, "kind": e.kind, "level": e.level, "uid": e.uid}
            for e in examples]


def task_config(data_file: Path, name: str = TASK_NAME) -> dict:
    """The task's YAML, as a dict."""
    return {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data_file.resolve())}},
        "test_split": "test",
        "output_type": "loglikelihood",
        "doc_to_text": "prompt",
        "doc_to_target": "target",
        "target_delimiter": "",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "source": "agent-forge eval (teacher-forced exact match)"},
    }


def write_lm_eval_task(examples: Sequence[TaskExample], folder: Path, name: str = TASK_NAME) -> Path:
    """Write the task's data and YAML into ``folder`` (created); returns the YAML's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data_file = folder / f"{name}.jsonl"
    data_file.write_text("".join(json.dumps(row) + "\n" for row in task_rows(examples)), encoding="utf-8")
    config_file = folder / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(task_config(data_file, name), sort_keys=False), encoding="utf-8")
    return config_file


def lm_eval_command(model_folder: Path, task_folder: Path, seq_len: int, name: str = TASK_NAME) -> str:
    """The lm_eval command line that scores a stored model on the task (CPU, the folder's own code)."""
    args = f"pretrained={Path(model_folder).resolve()},trust_remote_code=True,max_length={seq_len - 1}"
    return (f"lm_eval --model hf --model_args {args} --include_path {Path(task_folder).resolve()} "
            f"--tasks {name} --device cpu --batch_size 16")
