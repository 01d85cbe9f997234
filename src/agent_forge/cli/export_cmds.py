"""Edge commands: ``export`` a session's model as a deployment bundle, ``serve-bundle`` to try one."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from agent_forge.cli.app import STATE, JsonOpt, app, generation_budget, open_workspace
from agent_forge.cli.render import out, print_json, print_table
from agent_forge.config.schema import PHASE_NAMES, PipelineConfig
from agent_forge.errors import ArtifactCorruptError, ConfigError, NotFoundError

EXPORTABLE = PHASE_NAMES[: PHASE_NAMES.index("edge") + 1]  # Phase 8's compressed files are not a torch model


def _pick_model(registry: Any, session_id: str, model_id: str | None) -> str:
    """The given model, or the session's newest model of the latest phase up to Phase 7."""
    if model_id is not None:
        return model_id
    rows = [r for r in registry.search_models(session=session_id) if r["phase_name"] in EXPORTABLE]
    if not rows:
        raise NotFoundError(f"session {session_id} has no model to export yet",
                            "run the pipeline at least through Phase 1 (`agent-forge run`)")
    return max(rows, key=lambda r: (EXPORTABLE.index(r["phase_name"]), r["created_at"]))["model_id"]


def _edge_inputs(ref: Any, config: PipelineConfig, card: dict[str, Any] | None = None) -> Any:
    from agent_forge.data.sources import heldout_examples
    from agent_forge.eval.heldout import HeldoutSet
    from agent_forge.export.build import EdgeInputs, heldout_inputs
    from agent_forge.model_io import load_model, load_tokenizer

    model, tokenizer = load_model(ref), load_tokenizer(ref)
    heldout = HeldoutSet.build(tokenizer, heldout_examples(config), config.data.seq_len,
                               max_lm_sequences=config.data.heldout_lm_sequences)
    rows, prompts, tokens = heldout_inputs(heldout, config.edge)
    return EdgeInputs(model, tokenizer.to_json(), rows, prompts, tokens, [ref.path / "model.safetensors"],
                      lambda: load_model(ref), {"source_model": ref.model_id, "card": card})


def _print_report(report: Any, folder: Path, as_json: bool) -> None:
    if as_json:
        print_json({"bundle": str(folder), "agreement": {k: v.to_dict() for k, v in report.agreement.items()},
                    "profile": {k: v.to_dict() for k, v in report.profile.items()},
                    "onnx_int8": report.int8_decision})
        return
    if STATE.quiet:
        return
    out.print(f"bundle written to [bold]{folder}[/bold]")
    rows = [[name, f"{p.file_bytes / 1e6:.3f}", f"{p.decode_ms_per_token:.2f}",
             f"{report.agreement[name].max_abs_diff:.3g}" if name in report.agreement else "reference"]
            for name, p in report.profile.items()]
    print_table("formats", ["format", "file MB", "decode ms/token", "max abs logit diff"], rows)
    decision = report.int8_decision
    if decision and not decision["shipped"]:
        out.print(f"no model.int8.onnx: {decision['reason']}", markup=False, highlight=False)


@app.command("export")
def export_bundle(
    session_id: Annotated[str, typer.Argument(help="Session whose model to export.")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or ternary.")] = "ternary",
    out_dir: Annotated[Path | None, typer.Option("--out", help="Bundle folder (default: SESSION/exports/FMT).")]
    = None,
    model_id: Annotated[str | None, typer.Option("--model", help="Model id (default: the newest).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a session's model as a self-contained edge bundle (checked, profiled, with a manifest)."""
    if fmt not in ("onnx", "ternary"):
        raise ConfigError(f"unknown format '{fmt}'", "use --format onnx or --format ternary")
    import torch

    from agent_forge.export.build import blas_threads, build_edge_bundle, edge_options
    from agent_forge.export.bundle import verify_bundle
    from agent_forge.export.card import gather_card
    from agent_forge.model_io import load_ref
    from agent_forge.storage.atomic import atomic_dir, recover_dir

    workspace, registry = open_workspace()
    config = registry.session_config(session_id)
    ref = load_ref(registry, _pick_model(registry, session_id, model_id))
    folder = out_dir or workspace.session_dir(session_id) / "exports" / fmt
    section = config.edge.model_copy(update={"formats": [fmt]})
    threads = torch.get_num_threads()
    with blas_threads(threads):
        edge_inputs = _edge_inputs(ref, config, gather_card(registry, ref.model_id))  # README: the model card
        edge_inputs.source["bundle_name"] = Path(folder).name  # not the temporary folder it is written in
        recover_dir(Path(folder))
        with atomic_dir(Path(folder)) as tmp:
            report = build_edge_bundle(edge_inputs, edge_options(section, threads), tmp)
    verify_bundle(folder)
    _print_report(report, Path(folder), as_json)


def _runtime_answer(bundle_path: Path, max_new: int, think: bool = False, tools: bool = False) -> Any:
    from agent_forge.export.runtime import greedy_generate, load_bundle, tools_answer
    from agent_forge.export.runtime.bundle import think_answer

    bundle = load_bundle(bundle_path)  # verified again: the weights it names must be a listed file
    codec = bundle.codec()

    def answer(text: str) -> str:
        if tools:
            return tools_answer(bundle, text, max_new)
        if think:
            return think_answer(bundle, text, max_new)
        ids = greedy_generate(bundle.model, codec.encode(text), max_new, bundle.config.eos_token_id)
        return codec.decode(ids)

    return answer


def _onnx_answer(bundle_path: Path, max_new: int, manifest: dict[str, Any]) -> Any:
    from agent_forge.export.onnx import OnnxRunner
    from agent_forge.export.runtime.bundle import TextCodec, model_file
    from agent_forge.export.runtime.manifest import confined

    settings = json.loads(confined(bundle_path, "runtime.json").read_text(encoding="utf-8"))
    onnx = settings["onnx"]
    model_path = model_file(bundle_path, onnx, "int8" if onnx.get("int8") else "fp32", manifest)
    runner = OnnxRunner(model_path, onnx["seq_len"], pad_id=settings.get("pad_token_id") or 0)
    codec = TextCodec(confined(bundle_path, "tokenizer.json"), settings.get("bos_token_id"))
    eos = settings.get("eos_token_id")

    def answer(text: str) -> str:
        tokens = runner.greedy(codec.encode(text), max_new)
        return codec.decode(tokens[: tokens.index(eos) + 1] if eos in tokens else tokens)

    return answer


def _answer_fn(bundle_path: Path, max_new: int, think: bool = False, tools: bool = False) -> tuple[Any, str]:
    from agent_forge.export.bundle import verify_bundle
    from agent_forge.export.runtime.manifest import ManifestError

    try:
        manifest = verify_bundle(bundle_path)
        settings = json.loads((bundle_path / "runtime.json").read_text(encoding="utf-8"))
        if settings.get("weights"):
            return _runtime_answer(bundle_path, max_new, think, tools), "ternary runtime"
        if think or tools:
            raise ConfigError(f"{'tools' if tools else 'think'} mode needs the bundle's ternary runtime",
                              "export with --format ternary")
        if settings.get("onnx"):
            return _onnx_answer(bundle_path, max_new, manifest), "onnxruntime"
    except ManifestError as err:
        raise ArtifactCorruptError(str(err), "re-create the bundle with `agent-forge export`") from err
    raise ArtifactCorruptError(f"bundle {bundle_path} holds no model file this command can run")


@app.command("serve-bundle")
def serve_bundle(
    path: Annotated[Path, typer.Argument(help="Bundle folder (see `agent-forge export`).")],
    prompt: Annotated[str | None, typer.Option("--prompt", help="One prompt; without it, an interactive loop.")]
    = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", min=1, help="Tokens the model may "
                              "write (default 32; 192 with --think or --tools).")] = None,
    think: Annotated[bool, typer.Option("--think", help="Think mode: the model may think before it answers.")]
    = False,
    tools: Annotated[bool, typer.Option("--tools", help="Tools mode: think mode with the calculator/converter "
                                        "calls in the thought really run (thought with calls and results, "
                                        "then the answer).")] = False,
) -> None:
    """Generate from a bundle with its standalone runtime (greedy); verifies the manifest first. --think: the
    model may think before it answers; --tools: think mode with each tool call run and its result inserted."""
    if not (path / "manifest.json").is_file():
        raise NotFoundError(f"{path} is not a bundle (no manifest.json)", "pass the folder `agent-forge export` wrote")
    answer, engine = _answer_fn(path, generation_budget(max_new_tokens, think or tools, 32), think, tools)
    if prompt is not None:
        start = time.perf_counter()
        text = answer(prompt)
        out.print(text, markup=False, highlight=False, soft_wrap=True)
        if not STATE.quiet:
            out.print(f"[dim]{engine}, {(time.perf_counter() - start) * 1000:.0f} ms[/dim]")
        return
    out.print(f"[dim]{engine}; an empty line or Ctrl-D ends[/dim]")
    while True:
        try:
            line = input("> ")
        except EOFError:
            break
        if not line.strip():
            break
        out.print(answer(line), markup=False, highlight=False, soft_wrap=True)
