"""Metric functions against hand-computed values."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.eval.metrics import (
    IGNORE_INDEX,
    EvalResult,
    bits_per_byte,
    exact_match,
    masked_exact_match,
    mean_by_group,
    perplexity,
    summed_token_nll,
)


def test_summed_nll_matches_log_softmax_and_skips_ignored_positions():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=generator)
    targets = torch.tensor([[1, 4, IGNORE_INDEX], [0, IGNORE_INDEX, 2]])
    log_probs = logits.log_softmax(-1)
    expected = -(log_probs[0, 0, 1] + log_probs[0, 1, 4] + log_probs[1, 0, 0] + log_probs[1, 2, 2])
    nats, count = summed_token_nll(logits, targets)
    assert count == 4 and math.isclose(nats, float(expected), rel_tol=1e-6)


def test_exact_match_needs_every_scored_position_right():
    logits = torch.full((3, 3, 4), -5.0)
    for row, tokens in enumerate([[1, 2, 3], [1, 0, 3], [0, 0, 0]]):
        for position, token in enumerate(tokens):
            logits[row, position, token] = 5.0
    targets = torch.tensor([[IGNORE_INDEX, 2, 3], [IGNORE_INDEX, 2, 3], [IGNORE_INDEX] * 3])
    assert exact_match(logits, targets).tolist() == [True, False, False]  # no target: never right


def test_perplexity_bits_per_byte_and_grouping():
    assert math.isclose(perplexity(math.log(7.0)), 7.0)
    assert perplexity(1000.0) == math.inf
    assert math.isclose(bits_per_byte(total_nats=8 * math.log(2), n_bytes=4), 2.0)
    assert math.isnan(bits_per_byte(1.0, 0))
    assert mean_by_group([True, False, True, True], [2, 1, 2, 1]) == {1: 0.5, 2: 1.0}


def test_eval_result_serialises():
    result = EvalResult(1.0, math.e, 1.5, 0.5, {1: 0.5}, {"mc": 0.5}, 10, 2)
    assert result.to_dict()["accuracy_by_kind"] == {"mc": 0.5}


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 4), length=st.integers(1, 6), vocab=st.integers(2, 5), seed=st.integers(0, 2**16))
def test_masked_exact_match_equals_exact_match_on_the_full_logits(rows, length, vocab, seed):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, length, vocab, generator=gen)
    targets = torch.randint(0, vocab, (rows, length), generator=gen)
    targets[torch.rand(rows, length, generator=gen) < 0.5] = IGNORE_INDEX
    targets[0, -1] = logits[0, -1].argmax()  # at least one right scored position
    scored = targets != IGNORE_INDEX
    expected = exact_match(logits, targets)
    assert torch.equal(masked_exact_match(logits[scored], targets, scored), expected)
