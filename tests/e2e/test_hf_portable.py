"""Issue 24 point 1 on a real run: every model folder of every phase loads with `transformers` alone.

A fresh environment holding only torch and transformers (and what they require; not agent_forge, see
support/linked_venv.py) loads each registered folder of the smoke run with
``AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True)`` and ``AutoTokenizer.from_pretrained
(folder)``: the logits and greedy ``generate()`` must equal what our own loader's model gives, a ternary
model must hold as many BitLinear layers, and the tokenizer must carry the context and the chat template.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import torch

from agent_forge.config import PHASE_NAMES
from agent_forge.model_io import load_model, load_ref, load_tokenizer
from agent_forge.quant.bitlinear import bitlinear_modules
from agent_forge.storage.registry import ModelRegistry
from support.e2e import SESSION
from support.linked_venv import linked_venv

PROMPT = "What is 2 + 3?"
NEW_TOKENS = 8

CHILD = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
torch.set_num_threads(1)
probe, results = torch.load(sys.argv[1], weights_only=True), {}
for model_id, case in probe.items():
    model = AutoModelForCausalLM.from_pretrained(case["path"], trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(case["path"])
    chat = [{"role": "user", "content": sys.argv[3]}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(ids["input_ids"]).logits
        out = model.generate(ids["input_ids"], max_new_tokens=int(sys.argv[4]), do_sample=False)
    results[model_id] = {
        "class": type(model).__module__, "ids": ids["input_ids"][0].tolist(),
        "max_abs_diff": float((logits - case["logits"]).abs().max()),
        "greedy": out[0, ids["input_ids"].shape[1]:].tolist(),
        "bitlinear": sum(type(m).__name__ == "BitLinear" for m in model.modules()),
        "model_max_length": tokenizer.model_max_length,
    }
json.dump(results, open(sys.argv[2], "w"))
"""


def _expected(workspace: Path) -> tuple[dict[str, dict], dict[str, dict]]:
    """Per registered model: the probe (folder, our loader's logits) and the other figures to match."""
    registry = ModelRegistry(workspace / "registry" / "model_registry.db", readonly=True)
    probe, want = {}, {}
    for row in registry.search_models(session=SESSION):
        ref = load_ref(registry, row["model_id"])
        model, tokenizer = load_model(ref), load_tokenizer(ref)
        ids = torch.tensor([tokenizer.encode(f"{PROMPT}\nAnswer:", bos=True)])
        with torch.no_grad():
            logits = model(ids).logits
            greedy = model.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, ids.shape[1]:].tolist()
        probe[row["model_id"]] = {"path": str(ref.path), "logits": logits}
        want[row["model_id"]] = {"phase": row["phase_name"], "ids": ids[0].tolist(), "greedy": greedy,
                                 "bitlinear": len(bitlinear_modules(model)),
                                 "model_max_length": model.config.max_seq_len}
    registry.close()
    return probe, want


def test_every_phase_model_loads_with_only_torch_and_transformers(smoke_run, tmp_path: Path) -> None:
    workspace, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    probe, want = _expected(workspace)
    assert {w["phase"] for w in want.values()} == set(PHASE_NAMES)
    assert any(w["bitlinear"] for w in want.values()) and not all(w["bitlinear"] for w in want.values())
    torch.save(probe, tmp_path / "probe.pt")
    python = linked_venv(tmp_path / "venv", ["torch", "transformers"])
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1"}
    assert subprocess.run([str(python), "-I", "-c", "import agent_forge"], env=env, capture_output=True).returncode
    run = subprocess.run([str(python), "-I", "-c", CHILD, str(tmp_path / "probe.pt"), str(tmp_path / "out.json"),
                          PROMPT, str(NEW_TOKENS)], env=env, capture_output=True, text=True, timeout=900,
                         stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stderr[-4000:]
    got = json.loads((tmp_path / "out.json").read_text())
    for model_id, expected in want.items():
        result = got[model_id]
        assert result["class"].startswith("transformers_modules."), result  # the folder's code, not ours
        assert result["ids"] == expected["ids"], model_id  # the chat template gives the prompts the models learn
        assert result["max_abs_diff"] == 0.0, (model_id, result["max_abs_diff"])
        assert result["greedy"] == expected["greedy"], model_id
        assert result["bitlinear"] == expected["bitlinear"], model_id
        assert result["model_max_length"] == expected["model_max_length"], model_id
