"""`agent-forge generate` in-process: a registered model continues a prompt; bad ids are one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import agent_forge.cli.generate_cmds  # noqa: F401 - registers the command
from agent_forge.cli.app import app
from agent_forge.errors import NotFoundError
from support.phase_harness import seed_model


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("generate")
    return root, seed_model(root, "baking", name="baked").model_id


def test_generate_prints_the_prompt_and_its_continuation(workspace: tuple[Path, str]) -> None:
    root, model_id = workspace
    result = CliRunner().invoke(app, ["--workspace", str(root), "generate", "--model", model_id,
                                      "What is 2 + 3? Answer:", "--max-new-tokens", "6"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("What is 2 + 3? Answer:") and len(result.output.strip()) > 22


def test_generate_json_is_reproducible_with_a_seed_and_tools_flag(workspace: tuple[Path, str]) -> None:
    root, model_id = workspace
    args = ["--workspace", str(root), "generate", "-m", model_id, "Compute 12 * 7. Answer:", "--tools",
            "--max-new-tokens", "8", "--temperature", "1.0", "--json"]
    first = json.loads(CliRunner().invoke(app, [*args, "--seed", "3"]).output)
    again = json.loads(CliRunner().invoke(app, [*args, "--seed", "3"]).output)
    other = json.loads(CliRunner().invoke(app, [*args, "--seed", "4"]).output)
    assert first == again and first != other
    assert set(first) == {"model_id", "prompt", "thought", "closed", "answer", "calls", "ended"}
    assert isinstance(first["calls"], list)


def test_an_unknown_model_is_a_forge_error(workspace: tuple[Path, str]) -> None:
    root, _ = workspace
    result = CliRunner().invoke(app, ["--workspace", str(root), "generate", "--model", "nope", "hi"])
    assert result.exit_code != 0 and isinstance(result.exception, NotFoundError)
    assert "agent-forge models" in str(result.exception)


def test_think_and_tools_mode_get_a_thought_sized_budget_by_default() -> None:
    from agent_forge.cli.app import THINKING_TOKENS, generation_budget

    assert generation_budget(None, True, 64) == THINKING_TOKENS >= 176  # tiny's thought budget and the answer
    assert generation_budget(None, False, 64) == 64 and generation_budget(9, True, 64) == 9
