"""Profile and agreement helpers measure what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agent_forge.export.agreement import common_prefix, greedy_prefix, torch_greedy
from agent_forge.export.profile import FormatSpec, RuntimeStepper, peak_rss_delta, profile_format
from agent_forge.export.runtime import greedy_generate


def test_peak_rss_delta_sees_an_allocation() -> None:
    with peak_rss_delta() as small:
        np.ones(1000)
    with peak_rss_delta() as big:
        block = np.ones(40_000_000 // 8)
        del block
    if big["mb"] is None:  # not Linux: nothing to measure with
        return
    assert big["mb"] > 30 and small["mb"] < 10


def test_profile_reports_lengths_that_do_not_fit(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    runtime = make_runtime(bit_model, tmp_path)
    weights = tmp_path / "model.tq2_0.safetensors"
    spec = FormatSpec("capped", [weights], lambda: RuntimeStepper(runtime), max_length=32)
    profile, stepper = profile_format(spec, ids(80), [16, 32, 64], decode_tokens=3, repeats=1)
    assert profile.prefill_ms[16] > 0 and profile.prefill_ms[32] > 0 and profile.prefill_ms[64] is None
    assert "longer than 32" in profile.note
    assert profile.decode_ms_per_token > 0 and profile.file_bytes == weights.stat().st_size
    assert stepper.logits([5, 6]).shape == (2, 512)


def test_common_prefix() -> None:
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 3]) == 2
    assert common_prefix([], [1]) == 0


def test_teacher_forced_greedy_equals_decoding(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    """The one-pass greedy check gives exactly the matched length of token-by-token decoding: against the
    true reference (all 16) and against a reference changed at token 5 (5, whatever follows)."""
    prompt = ids(10, seed=11)
    reference = torch_greedy(bit_model)(prompt, 16)
    runtime = make_runtime(bit_model, tmp_path)
    decoded = greedy_generate(runtime, prompt, 16)
    changed = [*reference[:5], (reference[5] + 1) % 512, *reference[6:]]
    for ref_tokens, expected in ((reference, 16), (changed, 5)):
        one_pass = greedy_prefix(lambda t: runtime.forward(t)[0], prompt, ref_tokens)
        assert one_pass == common_prefix(decoded, ref_tokens) == expected
