"""Phase 8 on the smoke preset: a BitLinear edge model compressed, written, decoded, verified, measured."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from tests.support.phase_harness import harness_config, make_context, register_model

from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta, load_model
from agent_forge.phases.common import forge_config, session_data
from agent_forge.phases.final import (
    COMPRESSED_FILE,
    REPORT_FILE,
    FinalPhase,
    decode_file,
    measure,
    token_importance,
    tools_probe,
)
from agent_forge.pipeline.handoff import validate_handoff
from agent_forge.pipeline.phase import ModelRef
from agent_forge.quant.bitlinear import BitLinearConfig, bitlinear_modules, replace_linears
from agent_forge.reasoning.tools_mode import references_written, tools_report


def edge_model(root: Path, overrides: list[str]) -> ModelRef:
    """A BitLinear model registered as Phase 7 would register it."""
    config = harness_config("smoke", overrides)
    ctx = make_context(root, "edge", config)
    torch.manual_seed(0)
    model = ForgeForCausalLM(forge_config(config))
    bit_config = BitLinearConfig()
    replace_linears(model, config=bit_config)
    return register_model(ctx, model, "edge", metadata={"bitlinear": bitlinear_meta(model, bit_config)})


def logits(model: ForgeForCausalLM) -> torch.Tensor:
    ids = torch.randint(0, model.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_final_compresses_within_budget_and_the_file_decodes_to_the_saved_model(tmp_path: Path) -> None:
    overrides = ["final.max_ppl_increase=0.10"]
    ref = edge_model(tmp_path, overrides)
    ctx = make_context(tmp_path, "final", harness_config("smoke", overrides))
    result = FinalPhase().run(ctx, [ref])

    assert result.success and [m.model_id for m in result.models] == [ctx.model_id("final")]
    out = result.models[0]
    meta = out.metadata
    assert meta["ppl_increase"] <= 0.10 + 1e-9
    assert meta["ppl_increase"] == result.after.perplexity / result.before.perplexity - 1.0
    assert meta["compression_ratio"] > 8.0
    file_bytes = (out.path / COMPRESSED_FILE).stat().st_size
    assert meta["size_mb"] == file_bytes / 1e6 and result.after.size_mb == file_bytes / 1e6
    stages = meta["stages"]
    assert list(stages) == ["fp32", "ternary_packed", "ternary_packed+entropy", "+seedlm/vptq",
                            "+seedlm/vptq+entropy"]
    assert stages["+seedlm/vptq+entropy"]["bytes"] == file_bytes
    assert stages["fp32"]["bytes"] > stages["ternary_packed"]["bytes"] > stages["+seedlm/vptq"]["bytes"]
    assert stages["ternary_packed"]["bytes"] > stages["ternary_packed+entropy"]["bytes"] > file_bytes
    assert all(math.isfinite(row["perplexity"]) for row in stages.values())  # on the selection split
    assert meta["methods"]["model.embed_tokens.weight"].startswith("usq(")
    roles = {point["role"] for point in meta["size_quality"]}
    assert roles == {"lossless", "candidate", "chosen", "baseline"}
    chosen = next(p for p in meta["size_quality"] if p["role"] == "chosen")
    assert chosen["bytes"] == file_bytes and set(chosen["accuracy"]) == {"arith", "mc", "code"}
    stage = meta["lossless_stage"]
    assert stage["ours_bytes"] + stage["header_bytes"] == file_bytes
    assert stage["ours_bytes"] <= stage["xz_9e_bytes"]  # xz -9e over the very streams our entropy stage coded
    assert stage["ours_lossless_bytes"] <= stage["xz_9e_lossless_bytes"]
    assert meta["accuracy_drop"] == max(meta[f"accuracy_drop_{kind}"] for kind in ("arith", "mc", "code"))
    assert all(math.isfinite(float(v)) for v in result.metrics.values() if isinstance(v, (int, float)))
    assert result.metrics["entropy_saved_bytes"] > 0

    saved = load_model(out)
    assert set(bitlinear_modules(saved)) == set(meta["bitlinear"]["modules"]) and meta["bitlinear"]["modules"]
    assert torch.equal(logits(decode_file(out.path / COMPRESSED_FILE)), logits(saved))
    assert not torch.equal(logits(saved), logits(load_model(ref)))  # the embedding was really quantized
    report = json.loads((out.path / REPORT_FILE).read_text())
    assert {d["tensor"] for d in report["decisions"]} >= {"model.embed_tokens.weight"}
    outcome = validate_handoff("final", "output", ctx.config.handoff.get("final->output"), result)
    assert outcome.passed, outcome.summary()


def test_lossless_settings_reproduce_the_input_exactly(tmp_path: Path) -> None:
    overrides = ["final.min_lossy_numel=1000000000", "final.float_dtype=float32"]  # no lossy candidate
    ref = edge_model(tmp_path, overrides)
    ctx = make_context(tmp_path, "final", harness_config("smoke", overrides))
    result = FinalPhase().run(ctx, [ref])
    meta = result.models[0].metadata
    assert meta["methods"] == {}
    assert result.after.perplexity == result.before.perplexity and meta["ppl_increase"] == 0.0
    assert torch.equal(logits(load_model(result.models[0])), logits(load_model(ref)))
    assert meta["compression_ratio"] > 2.0  # ternary layers packed and entropy coded; fp32 embedding


def test_the_tools_probe_bounds_tools_mode_as_eval_reports_it(tmp_path: Path) -> None:
    overrides = ["final.tools_kinds=[arith]", "final.tools_bare_tasks=16", "final.tools_word_tasks=10"]
    ref = edge_model(tmp_path, overrides)
    ctx = make_context(tmp_path, "final", harness_config("smoke", overrides))
    data, model = session_data(ctx), load_model(ref)
    probe = tools_probe(ctx.config, data.tokenizer)
    assert probe is not None and len(probe.bare) == 16
    quality = measure(model, data.selection, probe)
    arith = [e for e in data.selection.examples if e.kind == "arith"]
    report = tools_report(model, data.tokenizer, arith, ctx.config.data.seq_len, probe.max_tokens)
    assert len(quality.correct["tools_arith"]) == len(arith) > 0
    assert quality.accuracy["tools_arith"] == report["kinds"]["arith"]["accuracy"]
    assert list(quality.correct["tools_bare"]) == references_written(model, probe.bare)
    assert list(quality.correct["tools_words"]) == references_written(model, probe.words) and len(probe.words) == 10
    kinds = {"arith", "mc", "code", "tools_arith", "tools_bare", "tools_words"}
    assert set(quality.accuracy) == kinds
    result = FinalPhase().run(ctx, [ref])
    chosen = next(p for p in result.models[0].metadata["size_quality"] if p["role"] == "chosen")
    assert set(chosen["accuracy"]) == kinds  # kinds of the budget


def test_the_bare_probe_draws_selection_calculations_and_no_probe_is_built_unasked(tmp_path: Path) -> None:
    config = harness_config("smoke", ["final.tools_bare_tasks=12"])
    tokenizer = session_data(make_context(tmp_path, "final", config)).tokenizer
    probe = tools_probe(config, tokenizer)
    assert probe is not None and probe.kinds == ()
    texts = [tokenizer.decode(ids) for ids, _ in probe.bare]
    assert all("<tool>calculator</tool>" in text for text in texts) and len(set(texts)) == 12
    assert tools_probe(harness_config("smoke", []), tokenizer) is None
    words = tools_probe(harness_config("smoke", ["final.tools_word_tasks=9"]), tokenizer)
    assert words is not None and words.bare == () and len(words.words) == 9
    stories = [tokenizer.decode(ids) for ids, _ in words.words]
    assert all("<tool>calculator</tool>" in text and "Answer:" in text for text in stories)  # a story, its calls


def test_token_importance_counts_the_tokens_of_thoughts_calls_and_the_persona(tmp_path: Path) -> None:
    config = harness_config("smoke", [])
    tokenizer = session_data(make_context(tmp_path, "final", config)).tokenizer
    importance = token_importance(config, tokenizer, 400)
    assert importance is not None and importance.shape == (config.model.vocab_size,)
    assert bool((importance >= 1.0).all())  # plus one: a token the sample missed is rare, not unused
    for special in ("<think>", "</think>", "<tool>", "</args>"):
        assert importance[tokenizer.special_id(special)] > 10, special  # written on every call, not "never"
    assert token_importance(config, tokenizer, 0) is None
