"""One filled workspace per test session (built through the real storage APIs; about two seconds)."""

from __future__ import annotations

import pytest

from agent_forge.ui.data import DashboardData
from support.ui_workspace import FilledWorkspace, fill_workspace


@pytest.fixture(scope="session")
def filled(tmp_path_factory: pytest.TempPathFactory) -> FilledWorkspace:
    return fill_workspace(tmp_path_factory.mktemp("ui_workspace"))


@pytest.fixture()
def data(filled: FilledWorkspace):
    view = DashboardData.open(filled.root)
    yield view
    view.close()
