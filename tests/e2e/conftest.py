"""Shared end-to-end fixture: one uninterrupted `smoke` run of the whole pipeline through the real CLI."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support.e2e import SESSION, agent_forge


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    workspace = tmp_path_factory.mktemp("e2e")
    proc = agent_forge(workspace, "run", "--preset", "smoke", "--name", SESSION)
    return workspace, proc
