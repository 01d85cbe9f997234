"""One size per model: the weights as the phase delivers them, read the same way for old and new rows."""

from __future__ import annotations

from pathlib import Path

from agent_forge.storage.artifacts import FLOAT_WEIGHTS, weights_size
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace


def test_each_phase_kind_counts_its_weights_file() -> None:
    assert weights_size({}, 1_000_000) == (4.0, FLOAT_WEIGHTS)
    assert weights_size({"size_mb": 0.75, "packed_file": "model.tq1_0.safetensors"}, 10) == \
        (0.75, "model.tq1_0.safetensors")
    assert weights_size({"size_mb": 0.29, "compressed_file": "model.afqz"}, 10) == (0.29, "model.afqz")
    assert weights_size({"size_mb": 0.79, "size_file": "bundle/model.tq2_0.safetensors",
                         "primary_format": "ternary_runtime"}, 10) == (0.79, "bundle/model.tq2_0.safetensors")
    assert weights_size({"size_mb": 0.79, "primary_format": "ternary_runtime"}, 10) == \
        (0.79, "bundle file of ternary_runtime")  # an edge row written before size_file
    assert weights_size({"size_mb": True}, 2) == (8e-6, FLOAT_WEIGHTS)


def test_registry_reads_one_size_even_from_rows_that_stored_the_folder(tmp_path: Path) -> None:
    registry = ModelRegistry(Workspace(tmp_path).registry_path)
    registry.create_session("s", "tiny", {})
    for name, meta in (("float", {}), ("packed", {"size_mb": 0.5, "packed_file": "model.tq1_0.safetensors"})):
        registry.register_model({"model_id": name, "session_id": "s", "phase_name": "bitnet", "model_name": name,
                                 "model_path": f"sessions/s/{name}", "size_mb": 6.3, "parameters": 250_000,
                                 "metadata": meta, "tags": []})  # 6.3: the whole folder, as older rows hold
    assert registry.get_model("float")["size_mb"] == 1.0 and registry.get_model("packed")["size_mb"] == 0.5
    assert {r["model_id"]: r["size_counts"] for r in registry.search_models()} == \
        {"float": FLOAT_WEIGHTS, "packed": "model.tq1_0.safetensors"}
