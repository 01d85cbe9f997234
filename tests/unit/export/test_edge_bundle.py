"""The bundle folder: written files, manifest with profile and agreement, and checks that catch tampering."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from agent_forge.data.tokenizer import train_tokenizer
from agent_forge.export.build import EdgeInputs, EdgeOptions, build_edge_bundle
from agent_forge.export.bundle import verify_bundle
from agent_forge.export.runtime import ManifestError, describe_files, greedy_generate, load_bundle
from agent_forge.export.runtime.manifest import sha256_file

CORPUS = [f"Question: what is {a} plus {b}? Answer: {a + b}" for a in range(30) for b in range(7)]


@pytest.fixture(scope="module")
def bundle(bit_model, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    tokenizer = train_tokenizer(CORPUS, 512)
    rows = [tokenizer.encode(" ".join(CORPUS[i : i + 6]), bos=True)[:64] for i in (0, 40)]
    prompts = [tokenizer.encode(CORPUS[3].rsplit(" ", 1)[0], bos=True)]
    stream = [t for r in rows for t in r] * 4
    inputs = EdgeInputs(bit_model, tokenizer.to_json(), rows, prompts, stream, [], lambda: bit_model,
                        {"source_model": "unit-test"})
    options = EdgeOptions(formats=("ternary",), prefill_lengths=(16, 48), decode_tokens=4, agreement_tokens=8,
                          profile_repeats=1, float_dtype="float32")
    folder = tmp_path_factory.mktemp("bundle") / "bundle"
    report = build_edge_bundle(inputs, options, folder)
    return folder, report


def _copy(bundle: tuple[Path, object], tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle[0], target)
    return target


def test_bundle_holds_every_part(bundle) -> None:
    folder, report = bundle
    names = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", "tokenizer.json", "runtime.json", "README.md", "manifest.json",
            "model.tq2_0.safetensors", "forge_runtime/__init__.py", "forge_runtime/model.py"} <= names
    manifest = verify_bundle(folder)
    assert set(manifest["files"]) == names - {"manifest.json"}
    assert manifest["profile"]["ternary_runtime"]["decode_ms_per_token"] > 0
    assert manifest["profile"]["pytorch_fp32"]["prefill_ms"]["48"] > 0
    assert manifest["agreement"]["ternary_runtime"]["max_abs_diff"] < 1e-3
    assert "| ternary_runtime |" in (folder / "README.md").read_text()
    assert report.agreement["ternary_runtime"].greedy_match == 1.0


def test_loaded_bundle_generates_like_the_report(bundle) -> None:
    folder, report = bundle
    loaded = load_bundle(folder)
    prompt = [1, 40, 41, 42]
    assert greedy_generate(loaded.model, prompt, 6) == greedy_generate(report.runtime_model, prompt, 6)
    text = loaded.codec().decode(loaded.codec().encode("what is 3 plus 4?"))
    assert "what is 3 plus 4?" in text


def test_flipped_byte_is_detected(bundle, tmp_path: Path) -> None:
    folder = _copy(bundle, tmp_path)
    weights = folder / "model.tq2_0.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01
    weights.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=r"model\.tq2_0\.safetensors"):
        verify_bundle(folder)
    with pytest.raises(ManifestError):
        load_bundle(folder)


@pytest.mark.parametrize("damage", ["edit_runtime", "edit_tool", "remove_tokenizer", "add_file", "bad_manifest"])
def test_other_damage_is_detected(bundle, tmp_path: Path, damage: str) -> None:
    folder = _copy(bundle, tmp_path)
    if damage in ("edit_runtime", "edit_tool"):
        name = "layers.py" if damage == "edit_runtime" else "tools/calculator.py"
        with open(folder / "forge_runtime" / name, "a") as handle:
            handle.write("\n# changed\n")
    elif damage == "remove_tokenizer":
        (folder / "tokenizer.json").unlink()
    elif damage == "add_file":
        (folder / "extra.bin").write_bytes(b"x")
    else:
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["format"] = "something else"
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError):
        verify_bundle(folder)


def test_interpreter_caches_are_not_damage(bundle, tmp_path: Path) -> None:
    folder = _copy(bundle, tmp_path)
    (folder / "forge_runtime" / "__pycache__").mkdir()
    (folder / "forge_runtime" / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    verify_bundle(folder)


def test_runtime_evaluation_face(bundle) -> None:
    """RuntimeLM gives eval.evaluate a torch-shaped view of the runtime, right padding only."""
    import torch

    from agent_forge.export.evaluation import RuntimeLM

    _, report = bundle
    lm = RuntimeLM(report.runtime_model)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    logits = lm(input_ids=ids, attention_mask=mask)
    np.testing.assert_allclose(logits[1, :2].numpy(), report.runtime_model.forward([1, 8])[0], atol=1e-5)
    with pytest.raises(ValueError, match="right-padded"):
        lm(input_ids=ids, attention_mask=torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]))


def _rehash(folder: Path) -> None:
    """What a forger does after tampering: list the files as they now are, so the checksums all match."""
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"] = describe_files(folder)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _point_weights_at(folder: Path, name: str) -> None:
    settings = json.loads((folder / "runtime.json").read_text())
    settings["weights"] = name
    (folder / "runtime.json").write_text(json.dumps(settings))


@pytest.mark.parametrize("where", ["absolute", "dotdot", "symlinked_folder", "unlisted_cache"])
def test_weights_outside_the_bundle_are_refused_even_with_a_rehashed_manifest(bundle, tmp_path: Path,
                                                                             where: str) -> None:
    folder = _copy(bundle, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(folder / "model.tq2_0.safetensors", elsewhere / "w.safetensors")
    name = {"absolute": str(elsewhere / "w.safetensors"), "dotdot": "../elsewhere/w.safetensors",
            "symlinked_folder": "linked/w.safetensors", "unlisted_cache": "__pycache__/w.safetensors"}[where]
    if where == "symlinked_folder":
        (folder / "linked").symlink_to(elsewhere, target_is_directory=True)
    if where == "unlisted_cache":  # inside the folder, but never hashed: interpreter caches are skipped
        (folder / "__pycache__").mkdir()
        shutil.copy(elsewhere / "w.safetensors", folder / "__pycache__" / "w.safetensors")
    _point_weights_at(folder, name)
    _rehash(folder)
    with pytest.raises(ManifestError, match=r"runtime\.json entry weights"):
        load_bundle(folder)
    if where != "unlisted_cache":
        with pytest.raises(ManifestError, match=r"runtime\.json entry weights"):
            load_bundle(folder, verify=False)


@pytest.mark.parametrize("entry", ["symlink_out", "dotdot", "absolute"])
def test_manifest_entries_outside_the_bundle_are_refused(bundle, tmp_path: Path, entry: str) -> None:
    folder = _copy(bundle, tmp_path)
    outside = tmp_path / "outside.json"
    shutil.copy(folder / "tokenizer.json", outside)
    if entry == "symlink_out":  # the tokenizer replaced by a link to a file elsewhere, then re-hashed
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer.json").symlink_to(outside)
        _rehash(folder)
    else:
        manifest = json.loads((folder / "manifest.json").read_text())
        name = "../outside.json" if entry == "dotdot" else str(outside)
        manifest["files"][name] = {"sha256": sha256_file(outside), "bytes": outside.stat().st_size}
        (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ManifestError, match=r"outside the bundle|not a relative path inside the bundle"):
        verify_bundle(folder)
