"""``agent-forge serve`` on a registered model (a real process, stopped with Ctrl-C) and on an exported
bundle (the numpy runtime driven by the engine), and its one-line errors."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest
import torch
from typer.testing import CliRunner

import agent_forge.cli.export_cmds
import agent_forge.cli.serve_cmds  # noqa: F401 - both register their commands on the app
from agent_forge.cli.app import app
from agent_forge.cli.serve_cmds import _threads_for
from agent_forge.errors import ArtifactCorruptError, ConfigError, NotFoundError
from agent_forge.export.runtime import greedy_generate, load_bundle
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta
from agent_forge.phases.common import forge_config
from agent_forge.quant.bitlinear import BitLinearConfig, replace_linears
from agent_forge.serve import bundle_backend, running
from support.phase_harness import SESSION, harness_config, make_context, register_model

RUNNER = CliRunner()
SRC = Path(__file__).resolve().parents[3] / "src"
PROMPT = "Tom has 3 apples.\nAnswer:"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, Path]:
    """A workspace with a registered ternary model and its exported ternary bundle."""
    root = tmp_path_factory.mktemp("serve")
    config = harness_config("smoke", ["phase7.agreement_tokens=8", "phase7.decode_tokens=4"])
    ctx = make_context(root, "baking", config)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    replace_linears(model, keep={"lm_head"}, config=BitLinearConfig())
    ref = register_model(ctx, model, "seed", {"bitlinear": bitlinear_meta(model, BitLinearConfig())})
    bundle = root / "bundle"
    exported = RUNNER.invoke(app, ["--workspace", str(root), "--quiet", "export", SESSION, "--format", "ternary",
                                   "--out", str(bundle)])
    assert exported.exit_code == 0, exported.output
    return root, ref.model_id, bundle


def test_a_bundle_is_served_through_its_runtime(workspace: tuple[Path, str, Path]) -> None:
    _, model_id, folder = workspace
    backend = bundle_backend(folder)
    assert backend.name == f"{model_id}__bundle" and backend.numpy_runtime
    runtime = load_bundle(folder)
    with _threads_for(backend), running(backend) as server:  # as the command serves it: one BLAS thread
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
        done = client.completions.create(model=backend.name, prompt=PROMPT, max_tokens=6, temperature=0)
        ids = backend.tokenizer.encode(PROMPT, bos=True)
        expected = greedy_generate(runtime.model, ids, 6, runtime.config.eos_token_id)
        eos = runtime.config.eos_token_id
        assert done.choices[0].text == backend.tokenizer.decode([t for t in expected if t != eos])
        thought = client.chat.completions.create(model=f"{backend.name}:think", max_tokens=6, temperature=0,
                                                 messages=[{"role": "user", "content": "Tom has 3 apples."}])
        assert "reasoning_content" in thought.choices[0].message.model_extra
        sampled = [client.completions.create(model=f"{backend.name}:tools", prompt=PROMPT, max_tokens=6, seed=1)
                   for _ in range(2)]
        assert sampled[0].choices[0].text == sampled[1].choices[0].text  # sampled at temperature 1, seeded
        assert "tool_calls" in sampled[0].choices[0].model_extra["agent_forge"]


def _serve_process(root: Path, *args: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "agent_forge", "--workspace", str(root), "serve", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line)
    if match is None:
        process.kill()
        pytest.fail(f"no address in {line!r}: {process.stderr.read()}")
    return process, match.group(1)


@pytest.mark.slow  # a real process: 8 s on a quiet machine, past its 60 s limit under load (CI ran it so)
def test_the_command_serves_a_registered_model_until_ctrl_c(workspace: tuple[Path, str, Path]) -> None:
    root, model_id, _ = workspace
    process, url = _serve_process(root, model_id, "--port", "0", "--max-tokens", "8", "--name", "smoke")
    try:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=60)
        done = client.chat.completions.create(model="smoke", max_tokens=4, temperature=0,
                                              messages=[{"role": "user", "content": "Tom has 3 apples."}])
        assert done.usage.completion_tokens <= 4 and done.choices[0].message.role == "assistant"
        with pytest.raises(openai.BadRequestError, match="at most 8"):
            client.completions.create(model="smoke", prompt="x", max_tokens=9)
    finally:
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=60)
    assert process.returncode == 0, errors
    assert '"POST /v1/chat/completions HTTP/1.1" 200' in errors  # one access line per request


def _invoke(root: Path, *args: str):
    return RUNNER.invoke(app, ["--workspace", str(root), *args])


def test_bad_targets_and_addresses_are_one_line_errors(workspace: tuple[Path, str, Path], tmp_path: Path) -> None:
    root, model_id, folder = workspace
    assert isinstance(_invoke(root, "serve", "no-such-model").exception, NotFoundError)
    assert isinstance(_invoke(root, "serve", str(tmp_path)).exception, NotFoundError)
    assert isinstance(_invoke(root, "serve", model_id, "--port", "70000").exception, ConfigError)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = _invoke(root, "serve", model_id, "--port", str(taken.getsockname()[1]))
    assert isinstance(busy.exception, ConfigError) and "in use" in str(busy.exception)
    away = _invoke(root, "serve", model_id, "--host", "192.0.2.1", "--port", "0")  # TEST-NET: not this machine
    assert "warning:" in away.output and "no authentication" in away.output
    assert isinstance(away.exception, ConfigError) and "192.0.2.1" in str(away.exception)
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "runtime.json").write_text((damaged / "runtime.json").read_text().replace('"weights"', '"w"'))
    assert isinstance(_invoke(root, "serve", str(damaged)).exception, ArtifactCorruptError)
