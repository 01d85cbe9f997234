"""Phase 6 Baking on the smoke preset: both bakes run, the KL falls, the output is registered and loadable."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from agent_forge.baking import BakeSet, mean_kl
from agent_forge.data.tokenizer import EOS_ID
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import bitlinear_meta, load_model
from agent_forge.phases.baking import BAKE_SEEDS, BakingPhase, bake_tasks
from agent_forge.phases.common import forge_config, session_data
from agent_forge.quant.bitlinear import BitLinear, BitLinearConfig, bitlinear_modules, replace_linears
from agent_forge.reasoning.tools_mode import reference_pieces
from agent_forge.tools.tasks import TOOL_KIND
from support.phase_harness import harness_config, make_context, register_model, seed_model

BAKES = ("tools", "persona")


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def full_bake(tmp_path_factory: pytest.TempPathFactory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("baking")
    ref = seed_model(root, "forge")
    ctx = make_context(root, "baking")
    return root, ref, ctx, BakingPhase().run(ctx, [ref])


def test_both_bakes_lower_the_kl_and_every_figure_is_recorded(full_bake) -> None:
    _, _, _, result = full_bake
    metrics = result.metrics
    assert result.success and result.phase_name == "baking"
    for bake in BAKES:
        before, after = metrics[f"{bake}/kl_heldout_before"], metrics[f"{bake}/kl_heldout_after"]
        assert before > 0 and after < before, (bake, before, after)
        assert metrics[f"{bake}/kl_train_last_batch"] < metrics[f"{bake}/kl_train_first_batch"]
    for stage in ("tools_prompted", "tools_before", "tools_after"):
        for figure in ("format_valid", "call_rate", "result_correct", "accuracy", "call_rate_other_kinds"):
            assert 0.0 <= metrics[f"{stage}/{figure}"] <= 1.0
    for figure in ("accuracy", "call_rate", "well_formed_rate", "result_correct_rate", "direct"):
        assert 0.0 <= metrics[f"tools/{figure}_arith"] <= 1.0  # the D6 tools column of the baked model
    assert result.after.extra["tools_accuracy_arith"] == metrics["tools/accuracy_arith"]
    for key in ("marker_share_prompted", "marker_share_before", "marker_share_after", "similarity_after"):
        assert 0.0 <= metrics[f"persona/{key}"] <= 1.0
    numbers = {k: v for k, v in metrics.items() if isinstance(v, float)}
    assert all(math.isfinite(v) for v in numbers.values())
    assert result.before is not None and result.after is not None
    assert result.before.perplexity and result.after.perplexity and result.after.size_mb


def test_the_tool_bake_comes_first_when_asked(tmp_path: Path) -> None:
    """tools_first: the persona bake reads only the kinds that make no calls, and runs second."""
    config = harness_config("smoke", ["baking.schedule=tools_first"])
    persona = bake_tasks(config, 24, 0, "persona")
    assert persona and {task.kind for task in persona} <= {"mc", "code"}
    assert "arith" in {task.kind for task in bake_tasks(harness_config("smoke"), 24, 0, "persona")}
    ref = seed_model(tmp_path, "forge", config=config)
    ctx = make_context(tmp_path, "baking", config)
    assert BakingPhase().run(ctx, [ref]).success
    started: dict[str, float] = {}
    for row in ctx.registry.metrics(ctx.session_id, phase="baking"):
        started[row["model"]] = min(started.get(row["model"], row["time"]), row["time"])
    assert started["bake_tools"] < started["bake_persona"]


def test_the_tool_bake_reads_anchored_kinds_without_its_prompt(tmp_path: Path) -> None:
    """D17: rows of ``anchor_kinds`` are the model's own continuations, so their KL starts at zero."""
    config = harness_config("smoke", ["baking.anchor_kinds=[mc, code]", "baking.continuations=16",
                                      "baking.samples_per_query=1"])
    ref = seed_model(tmp_path, "forge", config=config)
    ctx = make_context(tmp_path, "baking", config)
    model, phase = load_model(ref), BakingPhase()
    bake = phase._prepare(ctx, "tools", model, [5, 6, 7, 8])
    section = config.baking
    tasks = bake_tasks(config, -(-section.continuations // section.samples_per_query),
                       config.data.seed + BAKE_SEEDS["tools"], "tools")
    expected = [task.kind in {"mc", "code"} for task in tasks for _ in range(section.samples_per_query)]
    assert bake.train.anchored == expected and any(expected) and not all(expected)
    assert phase._prepare(ctx, "persona", model, [5, 6, 7, 8]).train.anchored is None  # only the tool bake
    kl = {}
    for flag in (True, False):
        rows = [i for i, anchored in enumerate(expected) if anchored == flag]
        train = bake.train
        part = BakeSet(train.prompt, [train.queries[i] for i in rows], [train.continuations[i] for i in rows],
                       [train.sampled[i] for i in rows], [flag] * len(rows))
        kl[flag] = mean_kl(model, part, bake.train_lp[rows][:, : part.width], 8)
    assert abs(kl[True]) < 1e-3 * kl[False], kl  # anchored rows: the model before the bake is its own teacher


def test_thought_anchors_open_a_reasoning_thought_read_without_the_prompt(tmp_path: Path) -> None:
    """D22: ``thought_anchors`` arithmetic bodies end in <think> and a strategy marker and are anchored, so
    the bake holds what the model writes after them (their KL starts at zero)."""
    from agent_forge.reasoning.strategies import STRATEGIES
    from agent_forge.reasoning.thoughts import THINK_ID

    config = harness_config("smoke", ["baking.thought_anchors=3", "baking.continuations=16",
                                      "baking.samples_per_query=1"])
    ref = seed_model(tmp_path, "forge", config=config)
    ctx = make_context(tmp_path, "baking", config)
    model = load_model(ref)
    bake = BakingPhase()._prepare(ctx, "tools", model, [5, 6, 7, 8])
    markers = {session_data(ctx).tokenizer.special_id(s.token) for s in STRATEGIES}
    train = bake.train
    assert len(train) == 16 + 3 and train.anchored[-3:] == [True] * 3 and not any(train.anchored[:16])
    assert all(q[-2] == THINK_ID and q[-1] in markers for q in train.queries[-3:])
    part = BakeSet(train.prompt, train.queries[-3:], train.continuations[-3:], train.sampled[-3:], [True] * 3)
    assert abs(mean_kl(model, part, bake.train_lp[-3:][:, : part.width], 8)) < 1e-4
    persona = BakingPhase()._prepare(ctx, "persona", model, [5, 6, 7, 8])
    assert len(persona.train) == 16  # only the tool bake


def test_the_baked_model_is_registered_loadable_and_changed(full_bake) -> None:
    _, ref, ctx, result = full_bake
    (out,) = result.models
    assert out.model_id == ctx.model_id("baked") and out.metadata["parents"] == [ref.model_id]
    stored = ctx.load_ref(out.model_id)
    baked, original = load_model(stored), load_model(ref)
    assert "bitlinear" not in stored.metadata
    assert stored.metadata["kl_tools_after"] < stored.metadata["kl_tools_before"]
    changed = [n for n, p in baked.state_dict().items() if not torch.equal(p, original.state_dict()[n])]
    assert changed


def test_a_rerun_resumes_from_the_checkpoints_and_gives_the_same_model(full_bake) -> None:
    root, ref, _, result = full_bake
    again = BakingPhase().run(make_context(root, "baking"), [ref])
    for bake in BAKES:
        assert again.metrics[f"{bake}/kl_heldout_after"] == result.metrics[f"{bake}/kl_heldout_after"]
    first, second = load_model(result.models[0]).state_dict(), load_model(again.models[0]).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_low_rank_bake_of_a_ternary_model_survives_the_merge_and_stays_ternary(tmp_path: Path) -> None:
    config = harness_config("smoke", ["baking.lora_rank=4", "baking.lr_scale=100"])
    forge = make_context(tmp_path, "forge", config)
    torch.manual_seed(1)
    model = ForgeForCausalLM(forge_config(config, initializer_range=0.2))  # peaked outputs: a KL worth baking
    replace_linears(model, keep={"lm_head"}, config=BitLinearConfig())
    ref = register_model(forge, model, "ternary", {"bitlinear": bitlinear_meta(model, BitLinearConfig())})
    result = BakingPhase().run(make_context(tmp_path, "baking", config), [ref])
    metrics = result.metrics
    for bake in BAKES:
        assert metrics[f"{bake}/lora_modules"] > 0 and metrics[f"{bake}/kl_heldout_before"] > 0.05
        # the adapter was trained through the ternary quantizer: merging keeps exactly what it computed
        assert metrics[f"{bake}/kl_heldout_after"] == pytest.approx(metrics[f"{bake}/kl_heldout_adapter"], rel=1e-4)
    assert metrics["bitlinear/ternary_flip_share"] > 0
    (out,) = result.models
    assert out.metadata["bitlinear"] == ref.metadata["bitlinear"]
    packed = out.path / out.metadata["packed_file"]
    assert result.after.size_mb == pytest.approx(packed.stat().st_size / 1e6)
    assert result.after.size_mb == out.size_mb  # one size: the packed file, in the registry too
    assert metrics["packed/logits_max_abs_diff"] == 0.0
    layers = bitlinear_modules(load_model(out))
    assert sorted(layers) == ref.metadata["bitlinear"]["modules"]
    for layer in layers.values():
        assert isinstance(layer, BitLinear) and layer.ramp == 1.0
        assert set(layer.ternary_weight().values.unique().tolist()) <= {-1, 0, 1}


def test_bare_tool_tasks_have_reference_demonstrations_as_the_runtime_writes_them(tmp_path: Path) -> None:
    """D18: ``calculation_demos`` more bare calculations in the tool bake only; a reference demonstration is the
    call (written), the runtime's result and the cue (inserted), ``</think>``, the answer and ``<eos>``."""
    config = harness_config("smoke", ["baking.reference_demos=true", "baking.calculation_demos=6",
                                      "baking.continuations=16", "baking.samples_per_query=1"])
    plain = bake_tasks(harness_config("smoke"), 24, 0, "tools")
    tasks = bake_tasks(config, 24, 0, "tools")
    extra = tasks[len(plain):]
    assert tasks[: len(plain)] == plain and len(extra) == 6
    assert {t.kind for t in extra} == {TOOL_KIND} and {t.meta["tool"] for t in extra} == {"calculator"}
    assert len(bake_tasks(config, 24, 0, "persona")) == 24  # the persona bake reads no more
    tokenizer = session_data(make_context(tmp_path, "baking", config)).tokenizer
    cue = tokenizer.encode(" Answer:")
    pieces = reference_pieces(tokenizer, extra[0], cue)
    text = tokenizer.decode([i for ids, _ in pieces for i in ids])
    result = extra[0].meta["result"]
    assert text == f"<tool>calculator</tool><args>{extra[0].meta['args']}</args><result>{result}</result></think>" \
                   f" Answer: {result}<eos>"
    assert [written for _, written in pieces] == [True, False, True, False, True]
    seeded = seed_model(tmp_path, "forge", config=config)
    bake = BakingPhase()._prepare(make_context(tmp_path, "baking", config), "tools", load_model(seeded), [5, 6])
    seed = config.data.seed + BAKE_SEEDS["tools"]
    bare = [i for i, t in enumerate(bake_tasks(config, 16, seed, "tools")) if t.kind == TOOL_KIND]
    assert bake.references == len(bare) > 6  # every bare row (the smoke teacher opens no thought: all reference)
    for row in bare:
        continuation, hard = bake.train.continuations[row], bake.train.hard[row]
        assert tokenizer.decode(continuation).startswith("<think><tool>") and continuation[-1] == EOS_ID
        assert hard[-1] and not hard[continuation.index(tokenizer.special_id("</result>"))]
    assert not any(any(bake.train.hard[i]) for i in range(len(bake.train)) if i not in bare)
