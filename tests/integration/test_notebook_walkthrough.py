"""Execute examples/forge_walkthrough.ipynb with nbclient on a filled workspace, so the notebook cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from agent_forge.storage.workspace import ENV_WORKSPACE
from support.ui_workspace import DONE, SPECIALISTS, fill_workspace

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "forge_walkthrough.ipynb"


def _outputs(nb) -> list[dict]:
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def test_walkthrough_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    filled = fill_workspace(tmp_path / "ws")
    monkeypatch.setenv(ENV_WORKSPACE, str(filled.root))  # the kernel inherits the environment
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = _outputs(nb)
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert str(filled.root) in text and DONE in text
    assert f"cognate: train/loss | {', '.join(sorted(['trunk', *SPECIALISTS]))}" in text
    figures = [json.loads(o.data["application/vnd.plotly.v1+json"]) if isinstance(
        o.data["application/vnd.plotly.v1+json"], str) else o.data["application/vnd.plotly.v1+json"]
        for o in outputs if "application/vnd.plotly.v1+json" in o.get("data", {})]
    assert len(figures) == 2  # the loss curve and the trajectory
    assert sorted(t["name"] for t in figures[0]["data"]) == sorted(["trunk", *SPECIALISTS])
    tables = "".join(o.data.get("text/html", "") for o in outputs if "data" in o)
    assert "<td>metadata.final_loss</td>" in tables  # the comparison of the first and last model
    assert "<td>trunk</td>" in tables and "<td>final</td>" in tables
    assert "'Question: what is 2 plus 3? Answer:" in text  # the generation cell printed the continuation
