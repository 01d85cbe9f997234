"""Elite mutation + loser merging (spec 2.2.5) on state dicts; the caller measures fitness.

Generation 0 is the eight combos of the three input models. From the ranked pool of a generation (its
evaluated members plus the champion so far, best first) the next generation is made of:

- elite children: each of the top ``elites`` (2) mutated ``children_per_elite`` (3) times (Gaussian noise
  on a ``mutation_rate`` share of the elements of the mutable tensors, standard deviation ``mutation_sigma``);
- loser children: the bottom ``pool - elites`` (6), in rank order, split into ``loser_groups`` (2) groups
  and each group merged with a random combo against the shared trunk (D2).

The champion belongs to the pool, so the best model so far is always an elite and is never lost (spec
2.2.7 "elite preservation") while only the champion and the current eight are held (the spec's storage
plan). Randomness comes from one ``torch.Generator`` and one ``random.Random`` per generation, seeded from
``(seed, generation)``: a run resumed at generation g draws exactly what an uninterrupted run draws.
Fitness and importance are callables supplied by the caller (it loads a state into a model and measures
it), so this module stays free of models and I/O.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor

from agent_forge.merge.combo import COMBO_COUNT, MergeParams, apply_merge_combo, decode_combo
from agent_forge.merge.mutation import mutate
from agent_forge.merge.state import StateDict, StateLike

StateFitness = Callable[[StateLike], float]
StateImportance = Callable[[StateLike], Mapping[str, Tensor]]
T = TypeVar("T")


@dataclass
class Member:
    """One model of the population: its weights, its lineage and (once measured) its fitness."""

    state: StateDict
    serial: int  # unique, in creation order; breaks fitness ties deterministically
    combo_id: int  # the combo of the merge it descends from
    origin: str  # "combo" | "mutant" | "loser_merge"
    generation: int  # the generation it was born in
    parents: tuple[int, ...] = ()
    fitness: float | None = None
    figures: dict[str, float] = field(default_factory=dict)  # fitness components and measurements

    def info(self) -> dict[str, Any]:
        """Everything but the weights, JSON-able (for checkpoints and logs)."""
        return {"serial": self.serial, "combo_id": self.combo_id, "origin": self.origin,
                "generation": self.generation, "parents": list(self.parents), "fitness": self.fitness,
                "figures": dict(self.figures)}

    @classmethod
    def from_info(cls, info: Mapping[str, Any], state: StateDict) -> Member:
        return cls(state, int(info["serial"]), int(info["combo_id"]), str(info["origin"]),
                   int(info["generation"]), tuple(info["parents"]), info["fitness"], dict(info["figures"]))


@dataclass(frozen=True)
class EvolutionSettings:
    """The spec's strategy: 2 elites x 3 children + 6 losers in 2 groups -> 8 models per generation."""

    seed: int = 7
    mutation_sigma: float = 0.01
    mutation_rate: float = 0.01
    elites: int = 2
    children_per_elite: int = 3
    loser_groups: int = 2
    merge: MergeParams = field(default_factory=MergeParams)
    mutable_keys: frozenset[str] | None = None  # tensors mutation may touch (None: every float tensor)

    def __post_init__(self) -> None:
        if self.elites < 1 or self.children_per_elite < 1 or self.loser_groups < 0:
            raise ValueError("evolution needs elites >= 1, children_per_elite >= 1, loser_groups >= 0")
        if self.loser_groups and self.losers // self.loser_groups < 2:
            raise ValueError(f"{self.losers} losers cannot form {self.loser_groups} groups of at least two")

    @property
    def population_size(self) -> int:
        return self.elites * self.children_per_elite + self.loser_groups

    @property
    def losers(self) -> int:
        """How many of the ranked pool's last members feed loser merging (6 in the spec)."""
        return self.population_size - self.elites


def generation_rngs(seed: int, generation: int) -> tuple[torch.Generator, random.Random]:
    """The two random streams of one generation, a pure function of ``(seed, generation)``."""
    mixed = (seed * 1_000_003 + generation * 7_919 + 12_345) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed), random.Random(mixed)


def ranked(pool: Sequence[Member]) -> list[Member]:
    """Members by fitness, best first (ties: older first); each serial once."""
    unique = {member.serial: member for member in pool}
    if any(m.fitness is None or not math.isfinite(m.fitness) for m in unique.values()):
        raise ValueError("every member must have a finite fitness before ranking")
    return sorted(unique.values(), key=lambda m: (-m.fitness, m.serial))


def _lookup(measure: Callable[[StateLike], T], known: dict[int, T]) -> Callable[[StateLike], T]:
    """``measure`` for new states, the known value for an input state (matched by identity)."""
    return lambda state: known[id(state)] if id(state) in known else measure(state)


def merge_group(
    states: Sequence[StateLike],
    combo_id: int,
    base: StateLike,
    settings: EvolutionSettings,
    generator: torch.Generator,
    fitness_of: StateFitness,
    importance_of: StateImportance,
    known_fitness: Sequence[float] | None = None,
    known_importance: Sequence[Mapping[str, Tensor]] | None = None,
) -> StateDict:
    """One combo merge of ``states``; only the stage-3 candidates not known already get measured."""
    selection = decode_combo(combo_id).selection
    fitness = importance = None
    if selection == "frankenmerge":
        fitness = _lookup(fitness_of, dict(zip(map(id, states), known_fitness or (), strict=False)))
    else:
        importance = _lookup(importance_of, dict(zip(map(id, states), known_importance or (), strict=False)))
    return apply_merge_combo(states, combo_id, base, fitness=fitness, importance=importance,
                             generator=generator, params=settings.merge)


def initial_population(
    states: Sequence[StateLike],
    base: StateLike,
    settings: EvolutionSettings,
    fitness_of: StateFitness,
    importance_of: StateImportance,
    known_fitness: Sequence[float] | None = None,
    known_importance: Sequence[Mapping[str, Tensor]] | None = None,
) -> list[Member]:
    """Generation 0: combos 0-7 of the input models (spec 2.2.5), not yet evaluated."""
    generator, _ = generation_rngs(settings.seed, 0)
    return [
        Member(merge_group(states, combo, base, settings, generator, fitness_of, importance_of,
                           known_fitness, known_importance), serial=combo, combo_id=combo, origin="combo",
               generation=0)
        for combo in range(COMBO_COUNT)
    ]


def mutant(state: StateLike, settings: EvolutionSettings, generator: torch.Generator) -> StateDict:
    """Gaussian mutation of the mutable tensors; the others are copied (never shared between members)."""
    keys = settings.mutable_keys
    mutable = {key: tensor for key, tensor in state.items() if keys is None or key in keys}
    changed = mutate(mutable, settings.mutation_sigma, settings.mutation_rate, generator)
    return {key: changed[key] if key in changed else tensor.clone() for key, tensor in state.items()}


def next_generation(
    pool: Sequence[Member],
    base: StateLike,
    generation: int,
    settings: EvolutionSettings,
    fitness_of: StateFitness,
    importance_of: StateImportance,
) -> tuple[list[Member], list[int]]:
    """Elite children then loser children of the ranked ``pool``; also the combos drawn for the losers."""
    order = ranked(pool)
    if len(order) < settings.elites + settings.losers:
        raise ValueError(f"a pool of {len(order)} cannot give {settings.elites} elites and "
                         f"{settings.losers} losers")
    generator, rng = generation_rngs(settings.seed, generation)
    serial = max(m.serial for m in order) + 1
    children: list[Member] = []
    for elite in order[: settings.elites]:
        for _ in range(settings.children_per_elite):
            children.append(Member(mutant(elite.state, settings, generator), serial, elite.combo_id, "mutant",
                                   generation, (elite.serial,)))
            serial += 1
    losers = order[len(order) - settings.losers :] if settings.losers else []
    size = len(losers) // settings.loser_groups if settings.loser_groups else 0
    combos = []
    for index in range(settings.loser_groups):
        group = losers[index * size : (index + 1) * size]
        combo = rng.randrange(COMBO_COUNT)
        state = merge_group([m.state for m in group], combo, base, settings, generator, fitness_of,
                            importance_of, known_fitness=[float(m.fitness) for m in group])
        parents = tuple(m.serial for m in group)
        children.append(Member(state, serial, combo, "loser_merge", generation, parents))
        combos.append(combo)
        serial += 1
    return children, combos


def parameter_diversity(
    states: Sequence[StateLike], keys: Sequence[str] | None = None, chunk: int = 1 << 20
) -> float:
    """Root-mean-square element distance between members, averaged over all pairs (0 = all identical).

    Differences are taken element by element (never through ``|a|^2 + |b|^2 - 2ab``; the difference of two
    close float32 values is exact), so the tiny distances between an elite's mutants are not lost to
    cancellation; per-slice norms are squared and summed in float64. Tensors are read in slices of at most
    ``chunk`` elements, stacked across members into reused buffers (fresh large temporaries cost page
    faults), so all pairs cost a few large ops per slice.
    """
    if len(states) < 2:
        return 0.0
    names = list(keys) if keys is not None else [k for k, v in states[0].items() if v.is_floating_point()]
    size = len(states)
    width = min(chunk, max(states[0][k].numel() for k in names))
    stacked, diff = torch.empty(size, width), torch.empty(size - 1, width)
    squared = torch.zeros(size, size, dtype=torch.float64)
    for name in names:
        flat = [state[name].reshape(-1).float() for state in states]
        for start in range(0, flat[0].numel(), chunk):
            slices = [t[start : start + chunk] for t in flat]
            part = torch.stack(slices, out=stacked[:, : slices[0].numel()])
            for i in range(size - 1):
                gaps = torch.sub(part[i + 1 :], part[i], out=diff[: size - 1 - i, : part.shape[1]])
                squared[i, i + 1 :] += torch.linalg.vector_norm(gaps, dim=1).double().square()
    count = max(sum(states[0][k].numel() for k in names), 1)
    upper = torch.triu_indices(size, size, offset=1)
    return float((squared[upper[0], upper[1]] / count).sqrt().mean())
