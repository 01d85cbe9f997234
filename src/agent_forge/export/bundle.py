"""The deployment bundle folder: model files, tokenizer, config, runtime, README and a checked manifest.

Layout (names fixed so the runtime finds them):

- ``config.json``: the Hugging Face model config (all fields); ``tokenizer.json``;
- ``runtime.json``: how the formats were written (weights file, activation bits, ONNX length, token ids);
- ``model.tq2_0.safetensors`` / ``model.tq1_0.safetensors`` (ternary) and ``model.onnx``,
  ``model.int8.onnx`` (ONNX), as exported;
- ``forge_runtime/``: a copy of ``agent_forge.export.runtime`` (numpy only), so the folder runs on its own,
  and in ``forge_runtime/tools/`` byte-identical copies of the tool modules tools mode runs calls with
  (``agent_forge/tools/{calculator,units,calls}.py``, standard library only);
- ``README.md`` and ``manifest.json`` (format, profile, agreement and sha256 + size of every other file).

Writing is the caller's business (the phase wraps it in an atomic folder swap); ``verify_bundle`` is the
check on load, shared with the runtime.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from string import Template
from typing import Any

from agent_forge.export.card import render_card
from agent_forge.export.runtime.manifest import (
    BUNDLE_FORMAT,
    MANIFEST,
    ManifestError,
    describe_files,
    verify_manifest,
)

RUNTIME_DIR = "forge_runtime"
SETTINGS_FILE = "runtime.json"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
README_FILE = "README.md"
ONNX_FP32, ONNX_INT8 = "model.onnx", "model.int8.onnx"
_RUNTIME_SOURCE = Path(__file__).resolve().parent / "runtime"
_TOOLS_SOURCE = Path(__file__).resolve().parents[1] / "tools"
TOOLS_DIR = "tools"
TOOL_MODULES = ("calculator.py", "units.py", "calls.py")  # stdlib only, importing each other relatively
_TOOLS_INIT = ('"""The tools of tools mode: copies of agent_forge/tools/{calculator,units,calls}.py '
               '(standard library only)."""\n')
_README_TEMPLATE = Path(__file__).resolve().parent / "bundle_readme.md"

__all__ = ["BUNDLE_FORMAT", "MANIFEST", "ManifestError", "copy_runtime", "finalize_bundle", "verify_bundle",
           "write_base_files"]


def copy_runtime(folder: Path) -> Path:
    """Copy the runtime's Python files (no caches) into ``folder/forge_runtime``, and the tool modules into
    its ``tools/`` package (their one home stays ``agent_forge/tools``)."""
    target = Path(folder) / RUNTIME_DIR
    target.mkdir(parents=True, exist_ok=True)
    for source in sorted(_RUNTIME_SOURCE.glob("*.py")):
        shutil.copyfile(source, target / source.name)
    tools = target / TOOLS_DIR
    tools.mkdir(exist_ok=True)
    (tools / "__init__.py").write_text(_TOOLS_INIT, encoding="utf-8")
    for name in TOOL_MODULES:
        shutil.copyfile(_TOOLS_SOURCE / name, tools / name)
    return target


def write_base_files(folder: Path, model_config: Any, tokenizer_json: str, settings: dict[str, Any]) -> None:
    """config.json (every field, so the runtime needs no defaults), tokenizer.json, runtime.json, runtime."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model_config.to_json_file(str(folder / CONFIG_FILE), use_diff=False)
    (folder / TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")
    (folder / SETTINGS_FILE).write_text(json.dumps({"format": BUNDLE_FORMAT, **settings}, indent=2,
                                                   sort_keys=True) + "\n", encoding="utf-8")
    copy_runtime(folder)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def _profile_table(profile: dict[str, dict[str, Any]]) -> str:
    lengths = sorted({int(n) for p in profile.values() for n in p["prefill_ms"]})
    head = ["format", "file MB"] + [f"prefill {n} ms" for n in lengths] + ["decode ms/token", "peak RSS MB"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, p in profile.items():
        cells = [name, _fmt(p["file_bytes"] / 1e6, 3)] + [_fmt(p["prefill_ms"].get(str(n))) for n in lengths]
        cells += [_fmt(p["decode_ms_per_token"]), _fmt(p["peak_rss_delta_mb"], 1)]
        rows.append("| " + " | ".join(cells) + " |")
    notes = [f"- {name}: {p['note']}" for name, p in profile.items() if p.get("note")]
    return "\n".join(rows + (["", *notes] if notes else []))


def _agreement_table(agreement: dict[str, dict[str, Any]]) -> str:
    rows = ["| format | max abs logit diff | mean abs diff | top-1 agreement | greedy match |",
            "|---|---|---|---|---|"]
    for name, a in agreement.items():
        rows.append(f"| {name} | {a['max_abs_diff']:.3g} | {a['mean_abs_diff']:.3g} | "
                    f"{a['top1_agreement']:.3f} | {a['greedy_match']:.3f} of {a['greedy_tokens']} |")
    return "\n".join(rows)


def _onnx_section(settings: dict[str, Any], int8: dict[str, Any] | None) -> str:
    onnx = settings.get("onnx")
    if not onnx:
        return ""
    return ("## ONNX\n`model.onnx` (fp32) and, when present, `model.int8.onnx` run with onnxruntime:\n\n"
            "```python\nimport numpy as np, onnxruntime as ort\n"
            f"session = ort.InferenceSession(\"{onnx['fp32']}\")\n"
            f"ids = np.zeros((1, {onnx['seq_len']}), dtype=np.int64)  # right-pad with <pad> = 0\n"
            "logits = session.run([\"logits\"], {\"input_ids\": ids})[0]\n```\n" + _int8_note(int8))


def _int8_note(int8: dict[str, Any] | None) -> str:
    """Whether the int8 graph shipped, with the measured greedy match that decided it (manifest: onnx_int8)."""
    if not int8:
        return ""
    figures = (f"its greedy decoding reproduced {int8['greedy_match_vs_fp32']:.3f} of the fp32 graph's "
               f"{int8['greedy_tokens']} tokens (required: {int8['threshold']})")
    if int8["shipped"]:
        return f"\n`model.int8.onnx` ({int8['recipe']}): shipped; {figures}.\n"
    return f"\nNo `model.int8.onnx`: {int8['reason']} ({int8['recipe']}).\n"


def render_readme(folder: Path, summary: dict[str, Any], settings: dict[str, Any]) -> str:
    files = "\n".join(f"- `{name}`" for name in sorted(p.name for p in Path(folder).iterdir())
                      if name != MANIFEST)
    onnx = settings.get("onnx") or {}
    return Template(_README_TEMPLATE.read_text(encoding="utf-8")).safe_substitute(
        title=summary.get("source_model", "model"), files=files,
        folder_name=summary.get("bundle_name", Path(folder).name),
        card=render_card(summary.get("card"), summary.get("profile", {})),
        onnx_section=_onnx_section(settings, summary.get("onnx_int8")),
        ternary_format=settings.get("ternary_format", "-"),
        activation_bits=settings.get("activation_bits", "-"), onnx_seq_len=onnx.get("seq_len", "-"),
        t_max=summary.get("trm_t_max", "-"), threads=summary.get("threads", 1),
        agreement=_agreement_table(summary.get("agreement", {})),
        profile=_profile_table(summary.get("profile", {})),
        memory_method=summary.get("memory_method", "-"))


def finalize_bundle(folder: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Write README.md, then manifest.json with the summary and the sha256 + size of every file."""
    folder = Path(folder)
    settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
    (folder / README_FILE).write_text(render_readme(folder, summary, settings), encoding="utf-8")
    manifest = {"format": BUNDLE_FORMAT, **summary, "files": describe_files(folder)}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n",
                                   encoding="utf-8")
    return manifest


def verify_bundle(folder: str | Path) -> dict[str, Any]:
    """Check every file against the manifest (raises ``ManifestError``); returns the manifest."""
    return verify_manifest(folder)


def bundle_bytes(folder: str | Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
