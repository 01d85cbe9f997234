"""The curriculum scheduler: band moves within the level range, the dream schedule, exact state round trip."""

from __future__ import annotations

import json

import pytest

from agent_forge.train.curriculum import CurriculumConfig, CurriculumScheduler


def _scheduler(**overrides) -> CurriculumScheduler:
    values = {"min_level": 1, "max_level": 3, "band_up": 0.75, "band_down": 0.55, "eval_interval": 4,
              "dream_every": 6, "dream_steps": 2, **overrides}
    return CurriculumScheduler(CurriculumConfig(**values))


def test_moves_up_at_the_upper_band_down_below_the_lower_and_holds_inside() -> None:
    sched = _scheduler()
    assert sched.level == 1
    assert sched.update(4, 0.60) == 1  # inside the band: hold
    assert sched.update(8, 0.75) == 2  # reaching band_up moves up
    assert sched.update(12, 0.74) == 2
    assert sched.update(16, 0.549) == 1  # below band_down moves down
    assert sched.update(20, 0.55) == 1
    assert sched.highest == 2
    assert [h["new_level"] for h in sched.history] == [1, 2, 2, 1, 1]


def test_never_leaves_the_level_range() -> None:
    sched = _scheduler(min_level=2, max_level=3)
    assert sched.level == 2
    assert sched.update(4, 0.0) == 2
    for step in range(5):
        sched.update(step, 1.0)
    assert sched.level == sched.highest == 3
    levels = [sched.update(step, acc) for step, acc in enumerate([0.0, 0.0, 0.0, 1.0, 0.0, 0.0])]
    assert set(levels) <= {2, 3}


def test_should_evaluate_every_interval() -> None:
    sched = _scheduler(eval_interval=4)
    assert [s for s in range(13) if sched.should_evaluate(s)] == [4, 8, 12]


def test_dreams_replay_earlier_levels_and_measure_them_before_and_after() -> None:
    sched = _scheduler(max_level=4, dream_every=6, dream_steps=2)
    calls: list[tuple[int, list[int]]] = []

    def measure(levels: list[int]) -> dict[int, float]:
        calls.append((len(calls), levels))
        return {lv: 0.1 * len(calls) for lv in levels}

    plan = [sched.batch_level(step, measure) for step in range(6)]
    assert plan == [(1, False)] * 6 and calls == []  # level 1 has nothing earlier: no dream at step 6 either
    assert sched.batch_level(6, measure) == (1, False)
    sched.update(7, 0.9)
    sched.update(8, 0.9)  # now level 3
    plan = [sched.batch_level(step, measure) for step in range(7, 15)]
    assert plan == [(3, False)] * 5 + [(1, True), (2, True), (3, False)]  # the cycle at 12 replays 1 and 2
    assert [levels for _, levels in calls] == [[1, 2], [1, 2]]
    assert len(sched.dreams) == 1
    dream = sched.dreams[0]
    assert dream["start"] == 12 and dream["before"] == {1: 0.1, 2: 0.1} and dream["after"] == {1: 0.2, 2: 0.2}
    assert sched.dream_effect() == pytest.approx(0.1)
    assert sched.steps_per_level == {1: 7, 3: 6} and sched.dream_steps_per_level == {1: 1, 2: 1}


def test_an_open_dream_is_closed_at_the_end() -> None:
    sched = _scheduler(dream_every=4, dream_steps=3)
    sched.update(1, 0.9)
    for step in range(6):
        sched.batch_level(step, lambda levels: {lv: 0.5 for lv in levels})
    assert sched.dreams == []
    sched.close_dream(lambda levels: {lv: 0.7 for lv in levels})
    assert sched.dreams[0]["after"] == {1: 0.7} and sched.dream_effect() == pytest.approx(0.2)


def test_state_round_trips_through_json_and_continues_identically() -> None:
    def run(sched: CurriculumScheduler, steps: range) -> list[tuple[int, bool]]:
        out = []
        for step in steps:
            if sched.should_evaluate(step):
                sched.update(step, 0.8 if step < 12 else 0.3)
            out.append(sched.batch_level(step, lambda levels: {lv: 0.4 for lv in levels}))
        return out

    straight = _scheduler()
    expected = run(straight, range(30))
    first = _scheduler()
    head = run(first, range(15))
    resumed = _scheduler()
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict(), sort_keys=True)))
    assert head + run(resumed, range(15, 30)) == expected
    assert resumed.state_dict() == straight.state_dict()


def test_invalid_configs_and_states_are_refused() -> None:
    with pytest.raises(ValueError):
        CurriculumConfig(min_level=3, max_level=2)
    with pytest.raises(ValueError):
        CurriculumConfig(band_up=0.5, band_down=0.6)
    with pytest.raises(ValueError):
        CurriculumConfig(dream_every=3, dream_steps=3)
    state = _scheduler().state_dict()
    state["level"] = 9
    with pytest.raises(ValueError, match="outside"):
        _scheduler().load_state_dict(state)
