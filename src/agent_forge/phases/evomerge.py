"""Phase 2 EvoMerge: the eight merge combos of the Phase 1 specialists, then elite-mutation evolution.

The three specialists name the trunk they were forked from (``trunk_model_id``, D2); it is the base of
task arithmetic (DARE, TIES) in every merge. Fitness (:mod:`agent_forge.eval.fitness`) is measured on a
fixed prefix of the shared held-out set against the specialists' mean, so 1.0 means "as good as the
average specialist". Selection sees only that prefix (and Fisher rows from it); the D6 records use the
whole held-out set, so the "after" figures are slightly optimistic on the prefix and clean on the rest.
Generation 0 holds the eight combos; each later generation holds six mutants of the two elites and two
merges of the six losers (:mod:`agent_forge.merge.evolution`); the champion is the fittest model seen.
The merged model keeps the specialists' shape and takes the mean of their non-shape settings.
Under torchrun every rank builds the same candidates from the same seeds and measures its share of them;
the values are gathered, so the run equals a single-process run. Each finished generation is
checkpointed (population and champion weights as safetensors, lineage and history as JSON), so a killed
run resumes at the last finished generation and ends with the same champion.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import shutil
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from agent_forge.config.schema import EvoMergeSection
from agent_forge.eval.fitness import (
    CompositeWeights,
    Fitness,
    FitnessMeasurement,
    composite_fitness,
    heldout_subset,
    measure,
)
from agent_forge.eval.heldout import HeldoutSet
from agent_forge.merge import MergeParams, describe_combo, fisher_importance
from agent_forge.merge.evolution import (
    EvolutionSettings,
    Member,
    StateDict,
    initial_population,
    next_generation,
    parameter_diversity,
    ranked,
)
from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model.modeling import NON_SHAPE_FIELDS
from agent_forge.model_io import load_model, model_writer
from agent_forge.phases.common import (
    SessionData,
    accuracy_metadata,
    eval_record,
    fp32_size_mb,
    parameter_count,
    record_metrics,
    session_data,
)
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult, PhaseRun
from agent_forge.storage.atomic import atomic_dir, crc32_file, recover_dir
from agent_forge.train.distributed import barrier, init_from_env, world
from agent_forge.train.precision import resolve_device

SHAPE_FIELDS = ("vocab_size", "hidden_size", "num_layers", "num_heads", "mlp_hidden")
GEN_DIR = re.compile(r"^gen_(\d{4})$")


# ---- models and states -------------------------------------------------------------------------------

def canonical_state(model: torch.nn.Module) -> StateDict:
    """CPU copy of the state dict with each storage once (the tied output head is left to ``tie_weights``)."""
    seen: set[int] = set()
    state: StateDict = {}
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:
            continue
        seen.add(tensor.data_ptr())
        state[key] = tensor.detach().to("cpu", copy=True)
    return state


def merged_config(configs: list[ForgeConfig]) -> dict[str, Any]:
    """Non-shape values for the merged model: the mean of the specialists' numeric values that differ."""
    values: dict[str, Any] = {}
    for name in sorted(NON_SHAPE_FIELDS):
        items = [getattr(config, name, None) for config in configs]
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in items)
        if numeric and any(v != items[0] for v in items):
            mean = math.fsum(items) / len(items)
            values[name] = round(mean) if all(isinstance(v, int) for v in items) else mean
    return values


@dataclass
class Scorer:
    """One working model on the device: loads a state and measures its fitness or Fisher importance."""

    model: ForgeForCausalLM
    heldout: HeldoutSet
    weights: CompositeWeights
    fisher_rows: list[torch.Tensor]
    batch_size: int
    reference: FitnessMeasurement | None = None
    evaluations: int = 0

    def load(self, state: StateDict) -> ForgeForCausalLM:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - {"lm_head.weight"}:
            raise ValueError(f"state does not fit the model: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        self.model.tie_weights()
        return self.model

    def measure(self, state: StateDict) -> FitnessMeasurement:
        return self.measure_model(self.load(state))

    def measure_model(self, model: torch.nn.Module) -> FitnessMeasurement:
        """Any model (a specialist with its own non-shape settings, say) on the fitness set."""
        self.evaluations += 1
        return measure(model, self.heldout, self.batch_size)

    def fitness(self, state: StateDict) -> Fitness:
        if self.reference is None:
            raise ValueError("the reference measurement must be set before fitness is scored")
        return composite_fitness(self.measure(state), self.reference, self.weights)

    def fitness_value(self, state: StateDict) -> float:
        return self.fitness(state).value

    def importance(self, state: StateDict) -> dict[str, torch.Tensor]:
        """Diagonal Fisher of the model's own objective on single held-out LM rows."""
        return fisher_importance(self.load(state), self.fisher_rows, _objective)


def _objective(model: ForgeForCausalLM, row: torch.Tensor) -> torch.Tensor:
    return model(input_ids=row, labels=row, return_logits=False).loss


def build_scorer(section: EvoMergeSection, heldout: HeldoutSet, specialists: list[ForgeForCausalLM],
                 device: torch.device) -> Scorer:
    model = ForgeForCausalLM(copy.deepcopy(specialists[0].config))
    model.set_non_shape(**merged_config([m.config for m in specialists]))
    subset = heldout_subset(heldout, section.fitness_lm_sequences, section.fitness_examples)
    rows = fisher_inputs(subset.lm_rows[: section.fisher_batches], section.fisher_rows_per_batch, device)
    weights = CompositeWeights(**section.fitness.model_dump())
    return Scorer(model.to(device).eval(), subset, weights, rows, section.eval_batch_size)


def fisher_inputs(rows: list[list[int]], per_batch: int, device: torch.device) -> list[torch.Tensor]:
    """Held-out rows for the Fisher, ``per_batch`` to a batch (rows of unequal length go alone)."""
    batches: list[torch.Tensor] = []
    for start in range(0, len(rows), per_batch):
        group = rows[start : start + per_batch]
        if len({len(row) for row in group}) == 1:
            batches.append(torch.tensor(group, dtype=torch.long, device=device))
        else:
            batches += [torch.tensor([row], dtype=torch.long, device=device) for row in group]
    return batches


def evolution_settings(section: EvoMergeSection, mutable: frozenset[str]) -> EvolutionSettings:
    merge = MergeParams(dare_drop=section.dare_drop, ties_keep=section.ties_keep,
                        frankenmerge_mode=section.frankenmerge_mode)
    return EvolutionSettings(seed=section.seed, mutation_sigma=section.mutation_sigma,
                             mutation_rate=section.mutation_rate, elites=section.elites,
                             children_per_elite=section.children_per_elite, loser_groups=section.loser_groups,
                             merge=merge, mutable_keys=mutable)


# ---- the evolution -----------------------------------------------------------------------------------

@dataclass
class Evolution:
    """Generations with sharded evaluation, per-generation checkpoints and logging."""

    ctx: PhaseContext
    scorer: Scorer
    settings: EvolutionSettings
    base: StateDict
    fingerprint: str
    population: list[Member] = field(default_factory=list)
    champion: Member | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.ctx.workspace.checkpoint_dir(self.ctx.session_id, self.ctx.phase_name, "evolution")

    def evaluate(self, members: list[Member]) -> None:
        """Measure ``members``, each rank its share (index % world), then share all values."""
        rank, size = world()
        local = {i: self.scorer.fitness(m.state).to_dict() for i, m in enumerate(members) if i % size == rank}
        if size > 1:
            gathered: list[Any] = [None] * size
            dist.all_gather_object(gathered, local)
            local = {i: figures for part in gathered for i, figures in part.items()}
        for index, member in enumerate(members):
            member.figures = local[index]
            member.fitness = local[index]["fitness"]

    def start(self, states: list[StateDict], fitness: list[float]) -> None:
        """Generation 0: the eight combos (the specialists' fitness and Fisher are measured once)."""
        started = time.perf_counter()
        fishers = [self.scorer.importance(state) for state in states]
        self.population = initial_population(states, self.base, self.settings, self.scorer.fitness_value,
                                             self.scorer.importance, fitness, fishers)
        self.evaluate(self.population)
        self.finish_generation(0, [], time.perf_counter() - started)

    def step(self, generation: int) -> None:
        started = time.perf_counter()
        pool = [*self.population, self.champion]
        children, loser_combos = next_generation(pool, self.base, generation, self.settings,
                                                 self.scorer.fitness_value, self.scorer.importance)
        self.evaluate(children)
        self.population = children
        self.finish_generation(generation, loser_combos, time.perf_counter() - started)

    def finish_generation(self, generation: int, loser_combos: list[int], seconds: float) -> None:
        contenders = [*self.population, *([self.champion] if self.champion else [])]
        self.champion = ranked(contenders)[0]
        summary = {**self.summary(generation, loser_combos), "seconds": seconds}
        self.history.append(summary)
        self.ctx.log(generation, summary, model="evolution")
        self.ctx.logger.info("generation", generation=generation, best=summary["best_fitness"],
                             mean=summary["avg_fitness"], diversity=summary["diversity_score"],
                             champion=describe_combo(self.champion.combo_id),
                             champion_fitness=self.champion.fitness, console=False)  # the bar shows it
        self.save(generation)

    def summary(self, generation: int, loser_combos: list[int]) -> dict[str, float]:
        """The spec's per-generation figures (2.2.8), all numbers."""
        fits = [float(m.fitness) for m in self.population]
        best = ranked(self.population)[0]
        usage = Counter(m.combo_id for m in self.population)
        keys = sorted(self.settings.mutable_keys) if self.settings.mutable_keys else None
        return {
            "generation": generation, "best_fitness": max(fits), "avg_fitness": statistics.fmean(fits),
            "min_fitness": min(fits), "max_fitness": max(fits), "fitness_std": statistics.pstdev(fits),
            "diversity_score": parameter_diversity([m.state for m in self.population], keys),
            "best_perplexity": best.figures["perplexity"], "best_accuracy": best.figures["accuracy"],
            "best_mean_steps": best.figures["mean_steps"],
            "best_memory_mb": best.figures["memory_bytes"] / 1e6,
            "champion_fitness": float(self.champion.fitness), "champion_combo_id": self.champion.combo_id,
            "champion_serial": self.champion.serial,
            **{f"combo_usage_{c}": usage.get(c, 0) for c in range(8)},
            **{f"loser_combo_{i}": c for i, c in enumerate(loser_combos)},
        }

    # ---- checkpoints ----------------------------------------------------------------------------------

    def save(self, generation: int) -> None:
        """Population + champion weights and the JSON state of one finished generation (rank 0 writes)."""
        if self.ctx.is_main:
            members = {m.serial: m for m in [*self.population, self.champion]}
            tensors = {f"{serial}/{key}": tensor.contiguous()
                       for serial, m in members.items() for key, tensor in m.state.items()}
            target = self.folder / f"gen_{generation:04d}"
            with atomic_dir(target) as tmp:
                save_file(tensors, str(tmp / "weights.safetensors"))
                state = {"generation": generation, "fingerprint": self.fingerprint, "history": self.history,
                         "population": [m.info() for m in self.population], "champion": self.champion.info(),
                         "weights_crc32": crc32_file(tmp / "weights.safetensors"),
                         "fitness_evaluations": self.scorer.evaluations}
                (tmp / "state.json").write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
            for old in self.generation_dirs():
                if old != target:
                    shutil.rmtree(old, ignore_errors=True)
        barrier()

    def generation_dirs(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        for path in self.folder.glob("gen_*"):
            recover_dir(path.with_name(path.name.split(".")[0]))
        return sorted(p for p in self.folder.iterdir() if p.is_dir() and GEN_DIR.match(p.name))

    def resume(self, last: int) -> int | None:
        """Load the newest finished generation (at most ``last``) of this configuration, or None."""
        for path in reversed(self.generation_dirs()):
            if int(path.name[4:]) > last:
                continue
            try:
                state = json.loads((path / "state.json").read_text(encoding="utf-8"))
                valid = crc32_file(path / "weights.safetensors") == state["weights_crc32"]
            except (OSError, ValueError, KeyError):
                continue
            if not valid or state["fingerprint"] != self.fingerprint:
                continue
            tensors = load_file(str(path / "weights.safetensors"))
            self.population = [_member(info, tensors, self.base) for info in state["population"]]
            self.champion = _member(state["champion"], tensors, self.base)
            self.history = state["history"]
            # the count of the whole run so far (it includes the specialists' measurements, which this
            # process repeated before resuming), so a resumed run reports what an uninterrupted one does
            self.scorer.evaluations = int(state.get("fitness_evaluations", self.scorer.evaluations))
            self.ctx.logger.info("resumed evolution", generation=state["generation"])
            return int(state["generation"])
        return None


def _member(info: dict[str, Any], tensors: dict[str, torch.Tensor], order: StateDict) -> Member:
    """A member from a checkpoint, keys in ``order``'s order: random draws go key by key (mutation, DARE).

    Each tensor is cloned: safetensors hands back views at the file's byte offsets (4 or 24 bytes past a
    64-byte boundary, say), and a vectorised reduction (SLERP's dot, a norm) sums in another order on data
    so placed. Measured: a resumed run's diversity 0.013237924780 against 0.013237925029 uninterrupted.
    A clone lies where the allocator puts every tensor of an uninterrupted run, so a resume is bit-exact."""
    return Member.from_info(info, {key: tensors[f"{info['serial']}/{key}"].clone() for key in order})


def fingerprint(section: EvoMergeSection, inputs: list[ModelRef], trunk_id: str, ctx: PhaseContext) -> str:
    """What the evolution's result depends on; a checkpoint of anything else is not resumed."""
    settings = section.model_dump(mode="json", exclude={"generations"})  # generation g never depends on it
    # "phase2": the section's name when the fingerprint was defined; renaming it would restart resumed runs
    payload = {"phase2": settings, "inputs": [ref.model_id for ref in inputs],
               "trunk": trunk_id, "data": ctx.config.data.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ---- the phase ---------------------------------------------------------------------------------------

@dataclass(kw_only=True)
class EvoMergeRun(PhaseRun):
    data: SessionData
    states: list[StateDict]
    evolution: Evolution
    specialist_fitness: list[Fitness]
    best_specialist: ForgeForCausalLM
    champion_model: ForgeForCausalLM | None = None


class EvoMergePhase(Phase):
    """Three specialists + their trunk -> one champion merge."""

    name = "evomerge"
    expected_inputs = 3

    def validate_input(self, ctx: PhaseContext, inputs: list[ModelRef]) -> tuple[bool, str]:
        ok, reason = super().validate_input(ctx, inputs)
        if not ok:
            return ok, reason
        trunks = {ref.metadata.get("trunk_model_id") for ref in inputs}
        if len(trunks) != 1 or None in trunks:
            return False, f"the specialists must share one trunk_model_id (D2): {sorted(map(str, trunks))}"
        configs = [ForgeConfig.from_pretrained(ref.path) for ref in inputs]
        shapes = {tuple(getattr(config, f) for f in SHAPE_FIELDS) for config in configs}
        if len(shapes) != 1:
            return False, f"the specialists differ in shape ({', '.join(SHAPE_FIELDS)}): {sorted(shapes)}"
        return True, "ok"

    def setup(self, ctx: PhaseContext, inputs: list[ModelRef]) -> EvoMergeRun:
        """The specialists, their trunk as the base and their fitness, and the evolution (resumable)."""
        ok, reason = self.validate_input(ctx, inputs)
        if not ok:
            raise ValueError(reason)
        section: EvoMergeSection = ctx.phase_config
        data = session_data(ctx)
        device = resolve_device(ctx.config.runtime.device)
        init_from_env(device)
        specialists = [load_model(ref).to(device) for ref in inputs]
        trunk_id = inputs[0].metadata["trunk_model_id"]
        base = canonical_state(load_model(ctx.load_ref(trunk_id)))
        states = [canonical_state(model) for model in specialists]
        scorer = build_scorer(section, data.selection, specialists, device)
        measured = [scorer.measure_model(model) for model in specialists]  # each with its own settings
        scorer.reference = FitnessMeasurement.mean(measured)
        specialist_fitness = [composite_fitness(m, scorer.reference, scorer.weights) for m in measured]
        mutable = frozenset(name for name, _ in scorer.model.named_parameters())
        evolution = Evolution(ctx, scorer, evolution_settings(section, mutable), base,
                              fingerprint(section, inputs, trunk_id, ctx))
        best = max(range(len(inputs)), key=lambda i: specialist_fitness[i].value)
        return EvoMergeRun(inputs=inputs, data=data, states=states, evolution=evolution,
                           specialist_fitness=specialist_fitness, best_specialist=specialists[best])

    def measure_before(self, ctx: PhaseContext, run: EvoMergeRun) -> EvalRecord:
        """The best specialist's record: what the merge has to beat."""
        return eval_record(run.best_specialist, run.data.heldout, fp32_size_mb(run.best_specialist))

    def work(self, ctx: PhaseContext, run: EvoMergeRun) -> None:
        self._evolve(ctx, ctx.phase_config, run.evolution, run.states, [f.value for f in run.specialist_fitness])
        run.champion_model = run.evolution.scorer.load(run.evolution.champion.state)

    def measure_after(self, ctx: PhaseContext, run: EvoMergeRun) -> EvalRecord:
        return eval_record(run.champion_model, run.data.heldout, fp32_size_mb(run.champion_model))

    def _evolve(self, ctx: PhaseContext, section: EvoMergeSection, evolution: Evolution,
                states: list[StateDict], specialist_fitness: list[float]) -> None:
        done = evolution.resume(section.generations)
        if done is None:
            evolution.start(states, specialist_fitness)
            done = 0
        total = section.generations
        with ctx.progress.task("evomerge:generations", total, min(done, total)) as bar:
            for generation in range(done + 1, section.generations + 1):
                evolution.step(generation)
                bar.note(f"champion {evolution.champion.fitness:.4f}")  # before advance: its line shows it
                bar.advance()

    def save(self, ctx: PhaseContext, run: EvoMergeRun) -> PhaseResult:
        inputs, evolution, model = run.inputs, run.evolution, run.champion_model
        champion = evolution.champion
        best_fitness = max(run.specialist_fitness, key=lambda f: f.value)
        figures = self._figures(inputs, evolution, best_fitness, model)
        metadata = {"fitness": float(champion.fitness), "merge_technique": describe_combo(champion.combo_id),
                    "combo_id": champion.combo_id, "combo_binary": format(champion.combo_id, "03b"),
                    "generation": champion.generation, "origin": champion.origin,
                    "fitness_components": {k.removesuffix("_score"): v for k, v in champion.figures.items()
                                           if k.endswith("_score")},
                    "fitness_measurement": {k: v for k, v in champion.figures.items()
                                            if not k.endswith("_score")},
                    "generations": len(evolution.history) - 1,
                    "trunk_model_id": inputs[0].metadata["trunk_model_id"],
                    "specializations": [ref.metadata.get("specialization") for ref in inputs],
                    **accuracy_metadata(run.after)}
        metrics = {**record_metrics("before", run.before), **record_metrics("after", run.after), **figures}
        parents = [*(r.model_id for r in inputs), metadata["trunk_model_id"]]
        ref = ctx.save_model("champion", model_writer(model, run.data.tokenizer), metadata, metrics=metrics,
                             parameters=parameter_count(model), parents=parents, tags=["champion"])
        metrics["duration_seconds"] = run.seconds
        artifacts = {"fitness_curve": [h["champion_fitness"] for h in evolution.history],
                     "best_fitness_curve": [h["best_fitness"] for h in evolution.history],
                     "diversity_curve": [h["diversity_score"] for h in evolution.history]}
        return PhaseResult(True, self.name, [ref], metrics, artifacts=artifacts, before=run.before,
                           after=run.after, duration_seconds=metrics["duration_seconds"])

    @staticmethod
    def _figures(inputs: list[ModelRef], evolution: Evolution, best_specialist: Fitness,
                 model: ForgeForCausalLM) -> dict[str, Any]:
        """Phase-level metrics of spec 2.2.3 / 2.2.8."""
        champion, history = evolution.champion, evolution.history
        initial = history[0]["best_fitness"]
        final, reference = float(champion.fitness), best_specialist.value
        params = parameter_count(model)
        return {
            "initial_fitness": initial, "final_fitness": final, "fitness_improvement": final - initial,
            "fitness_improvement_percent": _percent(final, initial), "best_specialist_fitness": reference,
            "improvement_over_specialist_percent": _percent(final, reference),
            "generations_completed": len(history) - 1, "champion_combo_id": champion.combo_id,
            "champion_combo_binary": format(champion.combo_id, "03b"),
            "best_merge_technique": describe_combo(champion.combo_id),
            "champion_generation": champion.generation, "final_accuracy": champion.figures["accuracy"],
            "final_perplexity": champion.figures["perplexity"],
            "compression_ratio": float(len(inputs)), "parameters_before": params * len(inputs),
            "parameters_after": params, "fitness_evaluations": evolution.scorer.evaluations,
            "final_diversity": history[-1]["diversity_score"],
            "final_fitness_std": history[-1]["fitness_std"],
        }


def _percent(value: float, reference: float) -> float:
    return 100.0 * (value - reference) / abs(reference) if reference else 0.0
