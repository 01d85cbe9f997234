"""The snapshot comparison a kill-and-resume test reports when two registries disagree."""

from agent_forge.storage.snapshot import snapshot_difference


def _snapshot(**changes):
    base = {"models": {"trunk@cognate": {"parameters": 10}}, "handoffs": [("cognate", "evomerge", "passed")],
            "phases": [{"phase": "cognate", "status": "completed"}],
            "metrics": [("cognate", "phase", 0, "phase/success", 1.0), ("cognate", "lm1", 1, "train/loss", 2.5)]}
    return {**base, **changes}


def test_agreeing_snapshots_have_no_difference():
    assert snapshot_difference(_snapshot(), _snapshot()) == {}


def test_a_lost_metric_row_is_named_and_nothing_else():
    actual = _snapshot(metrics=[("cognate", "lm1", 1, "train/loss", 2.5)])
    assert snapshot_difference(_snapshot(), actual) == {
        "metrics": {"missing": [("cognate", "phase", 0, "phase/success", 1.0)], "extra": []}}


def test_a_changed_model_shows_both_sides_and_a_reordered_list_says_so():
    actual = _snapshot(models={"trunk@cognate": {"parameters": 11}},
                       metrics=list(reversed(_snapshot()["metrics"])))
    assert snapshot_difference(_snapshot(), actual) == {
        "metrics": "order differs",
        "models": {"trunk@cognate": {"expected": {"parameters": 10}, "actual": {"parameters": 11}}}}


def test_a_part_only_one_side_has_is_reported_whole():
    expected = _snapshot()
    actual = {k: v for k, v in expected.items() if k != "handoffs"}
    assert snapshot_difference(expected, actual) == {
        "handoffs": {"expected": [("cognate", "evomerge", "passed")], "actual": None}}


def test_a_phase_run_that_differs_names_only_the_keys_that_differ():
    expected = _snapshot(phases=[{"phase": "cognate", "status": "completed", "metrics": {"a": 1.0, "b": 2.0}}])
    actual = _snapshot(phases=[{"phase": "cognate", "status": "completed", "metrics": {"a": 1.0, "b": 2.5}}])
    assert snapshot_difference(expected, actual) == {
        "phases": {"0:cognate": {"metrics": {"b": {"expected": 2.0, "actual": 2.5}}}}}
