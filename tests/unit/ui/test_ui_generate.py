"""Generation from a registered model: the same tokens a plain greedy loop over the model gives."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from agent_forge.errors import ArtifactCorruptError
from agent_forge.storage.registry import ModelRegistry
from agent_forge.ui.data import DashboardData
from agent_forge.ui.generate import generate_text, load_for_generation
from support.ui_workspace import DONE

PROMPT = "Question: what is 4 plus 5? Answer:"


@torch.no_grad()
def _greedy(loaded, prompt: str, steps: int) -> str:
    ids = loaded.tokenizer.encode(prompt, bos=True)
    new: list[int] = []
    for _ in range(steps):
        logits = loaded.model(input_ids=torch.tensor([ids + new])).logits
        token = int(logits[0, -1].argmax())
        new.append(token)
        if token == loaded.tokenizer.eos_id:
            break
    return loaded.tokenizer.decode(new)


def test_greedy_generation_matches_a_plain_loop(filled, data: DashboardData) -> None:
    loaded = load_for_generation(data, filled.models["evomerge/champion"])
    text = generate_text(loaded, PROMPT, max_new_tokens=10)
    assert text == _greedy(loaded, PROMPT, 10)
    assert generate_text(loaded, PROMPT, max_new_tokens=10) == text


def test_sampling_is_reproducible_and_leaves_the_global_generator_alone(filled, data: DashboardData) -> None:
    loaded = load_for_generation(data, filled.models["cognate/memory"])
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = generate_text(loaded, PROMPT, max_new_tokens=12, temperature=1.0, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    assert generate_text(loaded, PROMPT, max_new_tokens=12, temperature=1.0, seed=7) == first
    others = {generate_text(loaded, PROMPT, max_new_tokens=12, temperature=1.0, seed=s) for s in range(8, 12)}
    assert len(others | {first}) > 1  # different seeds sample different continuations


def _copy(filled, tmp_path: Path) -> tuple[Path, ModelRegistry]:
    """A copy of the shared workspace whose registry points at the copied model folders."""
    root = tmp_path / "copy"
    shutil.copytree(filled.root, root)
    registry = ModelRegistry(root / "registry" / "model_registry.db")
    registry.conn.execute("UPDATE models SET model_path = replace(model_path, ?, ?)",
                          (str(filled.root), str(root)))
    return root, registry


def test_a_tampered_model_is_refused(filled, tmp_path: Path) -> None:
    root, registry = _copy(filled, tmp_path)
    model_id = filled.models["forge/forge"]
    (Path(registry.get_model(model_id)["model_path"]) / "tokenizer.json").write_text("{}")
    with pytest.raises(ArtifactCorruptError, match="checksum"):
        load_for_generation(DashboardData.open(root), model_id)


def test_an_artifact_without_a_model_config_cannot_generate(filled, tmp_path: Path) -> None:
    from agent_forge.storage.artifacts import save_artifact

    root, registry = _copy(filled, tmp_path)
    folder = root / "table_only"
    info = save_artifact(folder, lambda f: (f / "table.json").write_text(json.dumps([1, 2])), {"kind": "t"})
    registry.register_model({"model_id": f"{DONE}__edge__table", "session_id": DONE, "phase_name": "edge",
                             "model_name": "table", "model_path": str(folder), "size_mb": info.size_mb,
                             "parameters": 0, "metadata": {"kind": "t"},
                             "metadata_sha256": info.metadata_sha256})
    with pytest.raises(ArtifactCorruptError, match="cannot generate"):
        load_for_generation(DashboardData.open(root), f"{DONE}__edge__table")


def test_verifying_a_model_never_touches_a_write_in_progress(filled, tmp_path: Path) -> None:
    """The pipeline may be writing next to the model the dashboard loads: reading must leave that alone."""
    root, registry = _copy(filled, tmp_path)
    model_id = filled.models["edge/edge"]
    folder = Path(registry.get_model(model_id)["model_path"])
    in_progress = folder.with_name(f"{folder.name}.tmp-1234")
    in_progress.mkdir()
    (in_progress / "model.safetensors").write_bytes(b"partial")
    ref = DashboardData.open(root).model_ref(model_id)
    assert ref.path == folder and ref.metadata["files"]
    assert (in_progress / "model.safetensors").read_bytes() == b"partial"
