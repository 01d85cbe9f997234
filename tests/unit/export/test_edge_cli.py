"""``agent-forge export`` and ``agent-forge serve-bundle`` through Typer's test runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import agent_forge.cli.export_cmds  # noqa: F401 - registers the commands on the app
from agent_forge.cli.app import app
from agent_forge.errors import ArtifactCorruptError, ConfigError, NotFoundError
from agent_forge.export.card import project_license
from agent_forge.export.runtime import describe_files
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta
from agent_forge.phases.common import forge_config
from agent_forge.quant.bitlinear import BitLinearConfig, replace_linears
from support.phase_harness import SESSION, harness_config, make_context, register_model

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ws")
    config = harness_config("smoke", ["edge.agreement_tokens=8", "edge.decode_tokens=4"])
    ctx = make_context(root, "baking", config)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    bit_config = BitLinearConfig()
    replace_linears(model, keep={"lm_head"}, config=bit_config)
    register_model(ctx, model, "seed", {"bitlinear": bitlinear_meta(model, bit_config)})
    return root


def _invoke(workspace: Path, *args: str):
    return RUNNER.invoke(app, ["--workspace", str(workspace), "--quiet", *args])


def test_export_ternary_then_serve(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    result = _invoke(workspace, "export", SESSION, "--format", "ternary", "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    assert '"ternary_runtime"' in result.output and (out / "model.tq2_0.safetensors").is_file()
    assert not (out / "model.onnx").exists()
    served = _invoke(workspace, "serve-bundle", str(out), "--prompt", "Question: 2 plus 3?", "--max-new-tokens", "5")
    assert served.exit_code == 0, served.output
    assert served.output.strip()
    thinking = _invoke(workspace, "serve-bundle", str(out), "--prompt", "Sam has 2 pens. Answer:", "--think",
                       "--max-new-tokens", "6")
    assert thinking.exit_code == 0, thinking.output  # a thought (if the model opens one) then the answer
    assert "</think>" in thinking.output or "<think>" not in thinking.output
    tools = _invoke(workspace, "serve-bundle", str(out), "--prompt", "What is 3 * 4? Answer:", "--tools",
                    "--max-new-tokens", "6")
    assert tools.exit_code == 0, tools.output  # whatever an untrained model writes, calls in it run or refuse
    session = RUNNER.invoke(app, ["serve-bundle", str(out), "--max-new-tokens", "3"], input="hello\n\n")
    assert session.exit_code == 0 and session.output.count("\n") >= 2

    data = bytearray((out / "tokenizer.json").read_bytes())
    data[10] ^= 0x20
    (out / "tokenizer.json").write_bytes(bytes(data))
    broken = _invoke(workspace, "serve-bundle", str(out), "--prompt", "x")
    assert isinstance(broken.exception, ArtifactCorruptError)


def test_export_onnx_then_serve_with_onnxruntime(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "onnx"
    result = _invoke(workspace, "export", SESSION, "--format", "onnx", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "model.onnx").is_file() and (out / "model.int8.onnx").is_file()
    assert not (out / "model.tq2_0.safetensors").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["onnx_int8"]["shipped"] and manifest["onnx_int8"]["greedy_match_vs_fp32"] >= 0.9
    card = (out / "README.md").read_text()
    assert "## Model card: `" in card and "### Lineage" in card and f"{project_license()} (the license" in card
    assert "cd onnx &&" in card  # the folder's own name, not the temporary one it was written in
    served = _invoke(workspace, "serve-bundle", str(out), "--prompt", "Question: 1 plus 1?", "--max-new-tokens", "3")
    assert served.exit_code == 0, served.output
    tools = _invoke(workspace, "serve-bundle", str(out), "--prompt", "What is 1 + 1? Answer:", "--tools")
    assert isinstance(tools.exception, ConfigError) and "tools mode" in str(tools.exception)


def test_bad_arguments_name_the_fix(workspace: Path, tmp_path: Path) -> None:
    assert isinstance(_invoke(workspace, "export", SESSION, "--format", "gguf").exception, ConfigError)
    assert isinstance(_invoke(workspace, "serve-bundle", str(tmp_path)).exception, NotFoundError)


def test_serve_bundle_refuses_weights_outside_the_bundle(workspace: Path, tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert _invoke(workspace, "export", SESSION, "--format", "ternary", "--out", str(out)).exit_code == 0
    outside = tmp_path / "outside.safetensors"
    shutil.copy(out / "model.tq2_0.safetensors", outside)
    settings = json.loads((out / "runtime.json").read_text())
    settings["weights"] = str(outside)
    (out / "runtime.json").write_text(json.dumps(settings))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["files"] = describe_files(out)  # re-hashed: every checksum matches the tampered files
    (out / "manifest.json").write_text(json.dumps(manifest))
    served = _invoke(workspace, "serve-bundle", str(out), "--prompt", "x")
    assert isinstance(served.exception, ArtifactCorruptError)
    assert "outside" in str(served.exception) and "\n" not in str(served.exception)
