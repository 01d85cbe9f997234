"""The bundle runs in a fresh virtual environment that has numpy and tokenizers only (no torch).

Creating the environment installs numpy and tokenizers from the package index (about 20 s here with pip's
cache); without the index the test skips and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent_forge.data.tokenizer import train_tokenizer
from agent_forge.export.agreement import torch_greedy
from agent_forge.export.build import EdgeInputs, EdgeOptions, build_edge_bundle

CORPUS = [f"Question: what is {a} times {b}? Answer: {a * b}" for a in range(25) for b in range(9)]


def _venv(tmp_path: Path) -> Path:
    """A clean venv (no system site packages) with numpy and tokenizers from the package index."""
    env_dir = tmp_path / "rt_venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=300)
    python = env_dir / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", "numpy", "tokenizers"],
                             capture_output=True, text=True, timeout=900)
    if install.returncode != 0:
        pytest.skip(f"the package index is unreachable: {install.stderr[-300:]}")
    return python


def test_bundle_runs_without_the_training_stack(bit_model, tmp_path: Path) -> None:
    tokenizer = train_tokenizer(CORPUS, 512)
    rows = [tokenizer.encode(" ".join(CORPUS[:6]), bos=True)[:64]]
    inputs = EdgeInputs(bit_model, tokenizer.to_json(), rows, [rows[0][:20]], rows[0] * 4, [], lambda: bit_model)
    options = EdgeOptions(formats=("ternary",), prefill_lengths=(32,), decode_tokens=2, agreement_tokens=4,
                          profile_repeats=1)
    folder = tmp_path / "bundle"
    build_edge_bundle(inputs, options, folder)
    python = _venv(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    probe = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, env=env)
    assert probe.returncode != 0, "the clean environment must not have torch"

    prompt = [1, *tokenizer.encode("Question: what is 3 times 4? Answer:")]
    run = subprocess.run([str(python), "-m", "forge_runtime", ".", "--ids", ",".join(map(str, prompt)),
                          "--max-new-tokens", "12"], cwd=folder, capture_output=True, text=True, env=env,
                         timeout=300, check=True)
    got = [int(t) for t in run.stdout.splitlines()[0].split(",")]
    want = torch_greedy(bit_model)(prompt, 12)
    eos = bit_model.config.eos_token_id
    assert got == (want[: want.index(eos) + 1] if eos in want else want)

    text = subprocess.run([str(python), "-m", "forge_runtime", ".", "--prompt", "what is 2 times 2?",
                           "--max-new-tokens", "4"], cwd=folder, capture_output=True, text=True, env=env,
                          timeout=300)
    assert text.returncode == 0 and "ms/token" in text.stdout, text.stderr

    tools = subprocess.run([str(python), "-m", "forge_runtime", ".", "--prompt", "What is 2 * 2? Answer:", "--tools",
                            "--max-new-tokens", "4"], cwd=folder, capture_output=True, text=True, env=env,
                           timeout=300)
    assert tools.returncode == 0, tools.stderr  # tools mode imports the bundle's own tool copies, stdlib only
    probe = subprocess.run([str(python), "-c", "import forge_runtime.tools.calls as c; "
                            "print(c.execute(c.parse_segment('<tool>calculator</tool><args>12 * 7</args>')).value)"],
                           cwd=folder, capture_output=True, text=True, env=env, timeout=300)
    assert probe.stdout.strip() == "84", probe.stderr
