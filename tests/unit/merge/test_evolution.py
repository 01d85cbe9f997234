"""Elite mutation + loser merging (spec 2.2.5) on small state dicts with a measurable fitness."""

from __future__ import annotations

import math

import pytest
import torch

from agent_forge.merge import MergeParams
from agent_forge.merge.evolution import (
    EvolutionSettings,
    Member,
    generation_rngs,
    initial_population,
    mutant,
    next_generation,
    parameter_diversity,
    ranked,
)

KEYS = ("model.layers.0.w", "model.layers.1.w", "embed.weight")


def _state(seed: int, scale: float = 1.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {key: torch.randn(6, 5, generator=g) * scale for key in KEYS}


TRUNK = _state(0)
TARGET = {key: TRUNK[key] + 0.3 for key in KEYS}
MODELS = [{key: TRUNK[key] + 0.1 * _state(i)[key] for key in KEYS} for i in (1, 2, 3)]


class Counting:
    """A real measurement (closeness to a target) that counts how often it is called."""

    def __init__(self) -> None:
        self.fitness_calls = 0
        self.importance_calls = 0

    def fitness(self, state) -> float:
        self.fitness_calls += 1
        distance = math.fsum(float((state[k] - TARGET[k]).square().sum()) for k in KEYS)
        return 1.0 / (1.0 + distance)

    def importance(self, state) -> dict[str, torch.Tensor]:
        self.importance_calls += 1
        return {key: state[key].abs() + 1e-3 for key in KEYS}


def _evaluated(members: list[Member], measure: Counting) -> list[Member]:
    for member in members:
        member.fitness = measure.fitness(member.state)
    return members


def _settings(**overrides) -> EvolutionSettings:
    values = {"seed": 3, "mutation_sigma": 0.05, "mutation_rate": 0.3, "merge": MergeParams(dare_drop=0.5)}
    return EvolutionSettings(**{**values, **overrides})


def test_generation_streams_are_pure_functions_of_seed_and_generation():
    a, ra = generation_rngs(7, 3)
    b, rb = generation_rngs(7, 3)
    c, _ = generation_rngs(7, 4)
    assert torch.equal(torch.rand(5, generator=a), torch.rand(5, generator=b))
    assert ra.random() == rb.random()
    assert not torch.equal(torch.rand(5, generator=generation_rngs(7, 3)[0]), torch.rand(5, generator=c))


def test_ranking_is_by_fitness_then_age_and_needs_finite_fitness():
    members = [Member({}, serial, 0, "combo", 0, fitness=f) for serial, f in [(0, 1.0), (1, 2.0), (2, 2.0)]]
    assert [m.serial for m in ranked([*members, members[0]])] == [1, 2, 0]
    members[0].fitness = math.nan
    with pytest.raises(ValueError):
        ranked(members)


def test_generation0_is_the_eight_combos_and_measures_only_what_is_new():
    measure = Counting()
    known = [measure.fitness(m) for m in MODELS]
    fishers = [measure.importance(m) for m in MODELS]
    measure.fitness_calls = measure.importance_calls = 0
    population = initial_population(MODELS, TRUNK, _settings(), measure.fitness, measure.importance, known, fishers)
    assert [m.combo_id for m in population] == list(range(8)) and [m.serial for m in population] == list(range(8))
    assert {m.origin for m in population} == {"combo"} and {m.generation for m in population} == {0}
    # FrankenMerge combos need the stage-2 model's fitness, DFS combos its importance: one each, no more
    assert measure.fitness_calls == 4 and measure.importance_calls == 4
    again = initial_population(MODELS, TRUNK, _settings(), measure.fitness, measure.importance, known, fishers)
    for first, second in zip(population, again, strict=True):
        assert all(torch.equal(first.state[k], second.state[k]) for k in KEYS)


def test_next_generation_mutates_the_elites_and_merges_the_losers():
    measure = Counting()
    pool = _evaluated(initial_population(MODELS, TRUNK, _settings(), measure.fitness, measure.importance,
                                         [measure.fitness(m) for m in MODELS],
                                         [measure.importance(m) for m in MODELS]), measure)
    order = ranked(pool)
    settings = _settings(mutable_keys=frozenset(KEYS[:2]))
    children, combos = next_generation(pool, TRUNK, 1, settings, measure.fitness, measure.importance)
    assert len(children) == settings.population_size == 8 and len(combos) == 2
    assert [c.origin for c in children] == ["mutant"] * 6 + ["loser_merge"] * 2
    assert [c.parents for c in children[:6]] == [(order[0].serial,)] * 3 + [(order[1].serial,)] * 3
    assert children[6].parents == tuple(m.serial for m in order[2:5])
    assert children[7].parents == tuple(m.serial for m in order[5:8])
    assert [c.serial for c in children] == list(range(8, 16)) and [c.combo_id for c in children[6:]] == combos
    for child in children[:3]:
        parent = order[0].state
        changed = (child.state[KEYS[0]] != parent[KEYS[0]]).float().mean().item()
        assert 0.0 < changed < 1.0  # a share of the elements, not all of them
        assert torch.equal(child.state["embed.weight"], parent["embed.weight"])  # not mutable
        assert child.state["embed.weight"].data_ptr() != parent["embed.weight"].data_ptr()
    repeat, _ = next_generation(pool, TRUNK, 1, settings, measure.fitness, measure.importance)
    assert all(torch.equal(a.state[k], b.state[k]) for a, b in zip(children, repeat, strict=True) for k in KEYS)


def test_evolution_climbs_a_measured_fitness():
    """A real search: with the champion kept in the pool, fitness toward a target never drops and rises."""
    measure = Counting()
    settings = _settings(mutation_sigma=0.1, mutation_rate=0.5)
    population = _evaluated(initial_population(MODELS, TRUNK, settings, measure.fitness, measure.importance,
                                               [measure.fitness(m) for m in MODELS],
                                               [measure.importance(m) for m in MODELS]), measure)
    champion = ranked(population)[0]
    curve = [champion.fitness]
    for generation in range(1, 16):
        population, _ = next_generation([*population, champion], TRUNK, generation, settings,
                                        measure.fitness, measure.importance)
        champion = ranked([*_evaluated(population, measure), champion])[0]
        curve.append(champion.fitness)
    assert curve == sorted(curve)
    assert curve[-1] > curve[0] * 1.05


def test_mutant_copies_what_it_does_not_mutate():
    settings = _settings(mutable_keys=frozenset())
    child = mutant(MODELS[0], settings, torch.Generator().manual_seed(0))
    assert all(torch.equal(child[k], MODELS[0][k]) and child[k] is not MODELS[0][k] for k in KEYS)


def test_parameter_diversity_is_the_mean_pairwise_rms_distance():
    a = {k: torch.zeros(3, 4) for k in KEYS}
    b = {k: torch.ones(3, 4) for k in KEYS}
    c = {k: torch.full((3, 4), 3.0) for k in KEYS}
    assert parameter_diversity([a, a, a]) == 0.0
    assert parameter_diversity([a, b]) == pytest.approx(1.0)
    assert parameter_diversity([a, b, c]) == pytest.approx((1.0 + 3.0 + 2.0) / 3)
    assert parameter_diversity([a, b], keys=[KEYS[0]]) == pytest.approx(1.0)
    near = {k: v + 1e-6 for k, v in c.items()}
    step = float((near[KEYS[0]] - c[KEYS[0]])[0, 0])  # 3 + 1e-6 in float32
    assert parameter_diversity([c, near]) == pytest.approx(step, rel=1e-9)  # no cancellation


def test_parameter_diversity_does_not_depend_on_the_slice_size():
    gen = torch.Generator().manual_seed(3)
    states = [{k: torch.randn(5, 7, generator=gen) for k in KEYS} for _ in range(4)]
    expected = sum(
        math.sqrt(sum(float((states[i][k] - states[j][k]).double().square().sum()) for k in KEYS) / (35 * len(KEYS)))
        for i in range(4) for j in range(i + 1, 4)
    ) / 6
    for chunk in (1, 6, 35, 1 << 20):
        assert parameter_diversity(states, chunk=chunk) == pytest.approx(expected, rel=1e-6)


def test_settings_and_member_round_trip():
    settings = EvolutionSettings()
    assert settings.population_size == 8 and settings.losers == 6
    with pytest.raises(ValueError):
        EvolutionSettings(elites=1, children_per_elite=1, loser_groups=1)  # one loser cannot be merged
    member = Member(MODELS[0], 5, 3, "mutant", 2, (1,), 0.5, {"fitness": 0.5})
    again = Member.from_info(member.info(), MODELS[0])
    assert again.info() == member.info()
