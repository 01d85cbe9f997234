"""Issue 25 F2: a held-out set from a small source never repeats an example, and its D6 record says how
many examples it lacks."""

from __future__ import annotations

from agent_forge.eval.metrics import EvalResult
from agent_forge.phases.common import record_of, session_data
from support.data_files import write_arc_file
from support.phase_harness import harness_config, make_context


def test_the_d6_record_names_the_shortfall_of_a_small_heldout_source(tmp_path):
    arc = write_arc_file(tmp_path, 120)
    config = harness_config("smoke", [
        "data.heldout_examples=64",
        f'data.sources=[{{"name": "gen", "kind": "builtin", "weight": 2.0}}, '
        f'{{"name": "arc", "kind": "arc_easy", "path": "{arc}", "weight": 1.0}}]',
    ])
    held = session_data(make_context(tmp_path / "ws", "cognate", config)).heldout
    arc_uids = [e.uid for e in held.examples if e.meta["source"] == "arc_easy"]
    assert len(arc_uids) == len(set(arc_uids)) and 0 < len(arc_uids) < 21  # 21 = arc's share of 64
    assert held.shortfall == {"arc": 21 - len(arc_uids)}
    result = EvalResult(1.0, 2.7, 1.0, 0.0, {}, {}, 10, 0)
    record = record_of(result, held, None, None)
    assert record.extra["heldout_shortfall/arc"] == 21 - len(arc_uids)
