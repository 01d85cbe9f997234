"""Phase 2 EvoMerge end to end on the smoke preset: a trunk and three specialists forked from it, as Phase 1
registers them, then the real phase (merges, fitness, evolution, checkpoints, champion)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from agent_forge.config.schema import PipelineConfig
from agent_forge.data.sources import training_examples
from agent_forge.eval.fitness import FitnessMeasurement, composite_fitness, heldout_subset, measure
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import load_model
from agent_forge.phases.common import forge_config, lm_step, packed_dataset, session_data
from agent_forge.phases.evomerge import EvoMergePhase, fisher_inputs
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import ModelRef, PhaseResult
from agent_forge.storage.atomic import sha256_file
from agent_forge.storage.snapshot import is_volatile
from support.phase_harness import harness_config, make_context, register_model

SPECIALISTS = (("reasoning", 42, 0.95), ("memory_integration", 1337, 0.90), ("adaptive_computation", 2023, 0.99))


def _train(model: ForgeForCausalLM, ctx: PhaseContext, steps: int, seed: int) -> None:
    """A few AdamW steps of the model's own objective on training-split batches."""
    data = session_data(ctx)
    examples = training_examples(ctx.config, 400, seed)
    dataset = packed_dataset(ctx, data.tokenizer, examples, batch_size=8, seed=seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(steps):
        loss = lm_step(model, dataset.batch(step)).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def register_inputs(root: Path, config: PipelineConfig) -> list[ModelRef]:
    """Phase 1's hand-over: a trained trunk, then three specialists trained on from it (D2)."""
    ctx = make_context(root, "cognate", config)
    torch.manual_seed(0)
    trunk = ForgeForCausalLM(forge_config(ctx.config))
    _train(trunk, ctx, 25, seed=0)
    trunk_ref = register_model(ctx, trunk, "trunk", {"role": "trunk"})
    refs = []
    for name, seed, threshold in SPECIALISTS:
        model = ForgeForCausalLM(forge_config(ctx.config, act_threshold=threshold))
        model.load_state_dict(trunk.state_dict())
        _train(model, ctx, 6, seed=seed)
        metadata = {"specialization": name, "seed": seed, "final_loss": 0.0, "trunk_model_id": trunk_ref.model_id}
        refs.append(register_model(ctx, model, name, metadata))
    return refs


def run_phase(root: Path, config: PipelineConfig, inputs: list[ModelRef]) -> PhaseResult:
    return EvoMergePhase().run(make_context(root, "evomerge", config), inputs)


@pytest.fixture(scope="module")
def smoke_config() -> PipelineConfig:
    return harness_config("smoke", ["evomerge.generations=3"])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, smoke_config) -> tuple[Path, list[ModelRef], PhaseResult]:
    root = tmp_path_factory.mktemp("evomerge")
    inputs = register_inputs(root, smoke_config)
    return root, inputs, run_phase(root, smoke_config, inputs)


def test_champion_is_saved_loadable_and_scored_as_recorded(first_run, smoke_config) -> None:
    root, inputs, result = first_run
    assert result.success and len(result.models) == 1
    ref = make_context(root, "evomerge", smoke_config).load_ref(result.models[0].model_id)  # verifies checksums
    meta = ref.metadata
    assert ref.model_id.endswith("__champion")
    assert {"fitness", "merge_technique", "combo_id", "generation", "fitness_components"} <= set(meta)
    assert set(meta["fitness_components"]) == {"perplexity", "accuracy", "speed", "memory"}
    assert 0 <= meta["combo_id"] < 8 and meta["merge_technique"].startswith(f"{meta['combo_id']} (")
    champion = load_model(ref)
    # re-measure the stored champion against the stored specialists: the recorded fitness is what it scores
    data = session_data(make_context(root, "evomerge", smoke_config))
    section = smoke_config.evomerge
    subset = heldout_subset(data.selection, section.fitness_lm_sequences, section.fitness_examples)
    reference = FitnessMeasurement.mean([measure(load_model(r), subset) for r in inputs])
    rescored = composite_fitness(measure(champion, subset), reference)
    assert rescored.value == pytest.approx(meta["fitness"], rel=1e-6)
    assert result.before is not None and result.after is not None
    assert result.after.perplexity == pytest.approx(result.metrics["after/perplexity"])


def test_champion_beats_every_generation0_combo_and_metrics_are_complete(first_run) -> None:
    root, _, result = first_run
    metrics = result.metrics
    assert metrics["generations_completed"] == 3
    assert metrics["final_fitness"] >= metrics["initial_fitness"]
    assert metrics["fitness_improvement"] == pytest.approx(metrics["final_fitness"] - metrics["initial_fitness"])
    curve = result.artifacts["fitness_curve"]
    assert len(curve) == 4 and curve == sorted(curve)  # the champion never gets worse
    for key in ("before/perplexity", "after/perplexity", "best_specialist_fitness", "final_accuracy"):
        assert torch.isfinite(torch.tensor(float(metrics[key])))
    ctx = make_context(root, "evomerge", harness_config("smoke", ["evomerge.generations=3"]))
    logged = ctx.registry.metrics(ctx.session_id, phase="evomerge", name="max_fitness", model="evolution")
    assert [row["step"] for row in logged] == [0, 1, 2, 3]  # generation 0 = the eight combos
    assert all(metrics["final_fitness"] >= row["value"] for row in logged)
    assert logged[0]["value"] == metrics["initial_fitness"]
    usage = ctx.registry.metrics(ctx.session_id, phase="evomerge", model="evolution")
    gen0_usage = [row["value"] for row in usage if row["step"] == 0 and row["name"].startswith("combo_usage_")]
    assert gen0_usage == [1.0] * 8  # every combo once in generation 0


def test_same_seed_same_champion_and_resume_reuses_generations(first_run, smoke_config, tmp_path) -> None:
    root, inputs, result = first_run
    weights = sha256_file(result.models[0].path / "model.safetensors")
    resumed = run_phase(root, smoke_config, inputs)  # every generation is checkpointed: nothing to redo
    assert resumed.metrics["final_fitness"] == result.metrics["final_fitness"]
    # nothing was redone, and the count is the whole run's, as an uninterrupted run reports it (F7)
    assert resumed.metrics["fitness_evaluations"] == result.metrics["fitness_evaluations"]
    assert sha256_file(resumed.models[0].path / "model.safetensors") == weights

    checkpoint = next(Path(root).rglob("gen_*/weights.safetensors"))
    data = bytearray(checkpoint.read_bytes())
    data[-1] ^= 0xFF  # a flipped weight byte: the CRC check rejects it and the evolution starts over
    checkpoint.write_bytes(bytes(data))
    redone = run_phase(root, smoke_config, inputs)
    assert redone.metrics["fitness_evaluations"] == result.metrics["fitness_evaluations"]
    assert redone.metrics["final_fitness"] == result.metrics["final_fitness"]


@pytest.mark.parametrize("stop_after", [0, 1])
def test_a_resumed_evolution_is_bit_exact(first_run, smoke_config, tmp_path, stop_after) -> None:
    """Stopped after generation 0 or 1 and resumed, the evolution's every figure equals the uninterrupted run's
    to the last bit (members read back from a checkpoint must not sum in another order)."""
    root, _, result = first_run
    fresh_inputs = register_inputs(tmp_path, smoke_config)  # an independent workspace, same seeds
    short = harness_config("smoke", [f"evomerge.generations={stop_after}"])
    run_phase(tmp_path, short, fresh_inputs)  # stops after generation `stop_after` ...
    again = run_phase(tmp_path, smoke_config, fresh_inputs)  # ... and resumes there up to generation 3
    assert again.metrics["champion_combo_id"] == result.metrics["champion_combo_id"]
    assert again.artifacts["fitness_curve"] == result.artifacts["fitness_curve"]
    assert sha256_file(again.models[0].path / "model.safetensors") == sha256_file(
        result.models[0].path / "model.safetensors")
    assert {k: v for k, v in again.metrics.items() if not is_volatile(k)} == {
        k: v for k, v in result.metrics.items() if not is_volatile(k)}
    # the resumed registry equals the uninterrupted one but for wall-clock seconds (docs/design/overview.md)
    assert _evolution_metrics(tmp_path, smoke_config) == _evolution_metrics(root, smoke_config)


def _evolution_metrics(root: Path, config: PipelineConfig) -> dict[tuple, float]:
    ctx = make_context(root, "evomerge", config)
    rows = ctx.registry.metrics(ctx.session_id, phase="evomerge")
    return {(r["model"], r["step"], r["name"]): r["value"] for r in rows if r["name"] != "seconds"}


def test_specialists_without_a_shared_trunk_are_rejected(first_run, smoke_config) -> None:
    root, inputs, _ = first_run
    broken = [inputs[0], inputs[1], ModelRef(inputs[2].model_id, inputs[2].path, {"specialization": "x"})]
    ok, reason = EvoMergePhase().validate_input(make_context(root, "evomerge", smoke_config), broken)
    assert not ok and "trunk_model_id" in reason


def _rank_worker(rank: int, world_size: int, root: str, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        config = harness_config("smoke", ["evomerge.generations=3"])
        ctx = make_context(Path(root), "evomerge", config)
        inputs = [ctx.load_ref(f"{ctx.session_id}__cognate__{name}") for name, _, _ in SPECIALISTS]
        result = EvoMergePhase().run(ctx, inputs)
        evaluations = torch.tensor([result.metrics["fitness_evaluations"]])
        torch.save(evaluations, os.path.join(root, f"evaluations_rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two spawned processes: about 20 s of CPU
def test_two_ranks_share_the_evaluations_and_find_the_same_champion(first_run, tmp_path) -> None:
    """Under torch.distributed each rank scores half of every generation; the champion is the single run's."""
    root, _, single = first_run
    copy = tmp_path / "ranks"
    # the same inputs (and registry), without the single run's evolution checkpoints and champion folder
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("checkpoints", "phase2_evomerge"))
    mp.spawn(_rank_worker, args=(2, str(copy), str(tmp_path / "init")), nprocs=2, join=True)
    ctx = make_context(copy, "evomerge", harness_config("smoke", ["evomerge.generations=3"]))
    champion = ctx.load_ref(ctx.model_id("champion"))
    assert champion.path.is_relative_to(copy)
    assert champion.metadata["fitness"] == single.metrics["final_fitness"]
    assert sha256_file(champion.path / "model.safetensors") == sha256_file(single.models[0].path / "model.safetensors")
    counts = [int(torch.load(copy / f"evaluations_rank{r}.pt", weights_only=True)) for r in range(2)]
    assert sum(counts) < 2 * single.metrics["fitness_evaluations"]  # the population was split, not repeated


def test_fisher_inputs_batch_rows_of_equal_length_only() -> None:
    rows = [[1, 2, 3], [4, 5, 6], [7, 8], [9, 10, 11]]
    single = fisher_inputs(rows, 1, torch.device("cpu"))
    assert [b.tolist() for b in single] == [[r] for r in rows]
    paired = fisher_inputs(rows, 2, torch.device("cpu"))
    assert [b.tolist() for b in paired] == [[[1, 2, 3], [4, 5, 6]], [[7, 8]], [[9, 10, 11]]]
