"""Parallel thoughts: equal to a sequential reference, isolated from each other, deterministic, banned-free."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from reasoning_builders import smoke_model

from agent_forge.reasoning.thoughts import (
    BANNED_IN_THOUGHT,
    END_THINK_ID,
    THINK_ID,
    ThoughtConfig,
    expand_anchors,
    inverse_cdf_sample,
    masked_logits,
    sample_anchors,
    sample_thoughts,
    score_thoughts,
    true_next_tokens,
)

CONFIG = ThoughtConfig(num_thoughts=2, length=4)


def setup(seed: int = 0):
    model = smoke_model(seed).eval()
    ids = torch.randint(24, 512, (2, 40), generator=torch.Generator().manual_seed(seed))
    anchors = torch.tensor([[3, 17, 30], [0, 12, 35]])
    batch_index, anchor_pos = expand_anchors(anchors, CONFIG.num_thoughts)
    return model, ids, batch_index, anchor_pos


def plain_logits(model, ids, b: int, p: int, tokens: list[int]) -> torch.Tensor:
    sequence = torch.cat((ids[b, : p + 1], torch.tensor(tokens, dtype=torch.long)))[None]
    return model(sequence).logits[0, p + 1 :]


def test_expand_anchors_orders_streams_by_sequence_position_thought():
    batch_index, anchor_pos = expand_anchors(torch.tensor([[1, 5], [2, 7]]), 3)
    assert batch_index.tolist() == [0] * 6 + [1] * 6
    assert anchor_pos.tolist() == [1, 1, 1, 5, 5, 5, 2, 2, 2, 7, 7, 7]


def test_sampled_anchors_are_distinct_in_range_and_reproducible():
    first = sample_anchors(40, 3, 6, 4, torch.Generator().manual_seed(0))
    again = sample_anchors(40, 3, 6, 4, torch.Generator().manual_seed(0))
    assert torch.equal(first, again) and first.shape == (3, 6)
    assert int(first.max()) <= 40 - 4 - 1 and all(len(set(row.tolist())) == 6 for row in first)


@torch.no_grad()
def test_greedy_parallel_thoughts_equal_a_sequential_reference():
    model, ids, batch_index, anchor_pos = setup(1)
    state = model.prefix_state(ids)
    thoughts = sample_thoughts(model, state, batch_index, anchor_pos, CONFIG)
    for s in range(len(batch_index)):
        b, p, tokens = int(batch_index[s]), int(anchor_pos[s]), [THINK_ID]
        for _ in range(CONFIG.length):
            logits = masked_logits(plain_logits(model, ids, b, p, tokens)[-1:], CONFIG.banned)
            tokens.append(int(logits.argmax(-1)))
        assert thoughts[s].tolist() == tokens[1:]


@torch.no_grad()
def test_scoring_pass_equals_plain_forwards_of_each_stream():
    model, ids, batch_index, anchor_pos = setup(2)
    state = model.prefix_state(ids)
    thoughts = sample_thoughts(model, state, batch_index, anchor_pos, CONFIG, torch.Generator().manual_seed(5))
    true = true_next_tokens(ids, batch_index, anchor_pos, 3)
    scores = score_thoughts(model, state, batch_index, anchor_pos, thoughts, true, CONFIG)
    for s in range(len(batch_index)):
        b, p = int(batch_index[s]), int(anchor_pos[s])
        assert true[s].tolist() == ids[b, p + 1 : p + 4].tolist()
        stream = [THINK_ID, *thoughts[s].tolist(), END_THINK_ID, *true[s, :-1].tolist()]
        logits = plain_logits(model, ids, b, p, stream)
        policy = F.log_softmax(masked_logits(logits[: CONFIG.length], CONFIG.banned), -1)
        expected = policy.gather(-1, thoughts[s].unsqueeze(-1)).sum()
        torch.testing.assert_close(scores.policy_logp[s], expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(scores.talk_logits[s], logits[CONFIG.length + 1 :], atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_a_thought_sees_its_own_prefix_and_nothing_from_other_thoughts():
    model, ids, batch_index, anchor_pos = setup(3)
    state = model.prefix_state(ids)
    thoughts = sample_thoughts(model, state, batch_index, anchor_pos, CONFIG, torch.Generator().manual_seed(1))
    true = true_next_tokens(ids, batch_index, anchor_pos, 2)
    base = score_thoughts(model, state, batch_index, anchor_pos, thoughts, true, CONFIG)
    changed = thoughts.clone()
    changed[1] = (changed[1] + 7) % 500 + 24  # stream 1 shares its sequence and position with stream 0
    other = score_thoughts(model, state, batch_index, anchor_pos, changed, true, CONFIG)
    keep = [s for s in range(len(batch_index)) if s != 1]
    torch.testing.assert_close(other.talk_logits[keep], base.talk_logits[keep])
    torch.testing.assert_close(other.policy_logp[keep], base.policy_logp[keep])
    assert not torch.allclose(other.policy_logp[1], base.policy_logp[1])
    later = ids.clone()
    later[0, 31:] = (later[0, 31:] + 3) % 488 + 24  # after every anchor of sequence 0 except the last
    moved = model.prefix_state(later)
    again = score_thoughts(model, moved, batch_index, anchor_pos, thoughts, true, CONFIG)
    early = [s for s in range(len(batch_index)) if int(batch_index[s]) == 0 and int(anchor_pos[s]) < 31]
    torch.testing.assert_close(again.talk_logits[early], base.talk_logits[early], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_sampling_is_reproducible_and_never_emits_a_banned_token():
    model, ids, batch_index, anchor_pos = setup(4)
    state = model.prefix_state(ids)
    config = ThoughtConfig(num_thoughts=2, length=6)
    first = sample_thoughts(model, state, batch_index, anchor_pos, config, torch.Generator().manual_seed(9))
    again = sample_thoughts(model, state, batch_index, anchor_pos, config, torch.Generator().manual_seed(9))
    assert torch.equal(first, again)
    assert not torch.isin(first, torch.tensor(BANNED_IN_THOUGHT)).any()
    assert not torch.equal(first[0::2], first[1::2])  # two samples at one position differ somewhere


def test_inverse_cdf_sampling_follows_the_distribution():
    probs = torch.tensor([[0.1, 0.0, 0.6, 0.3]]).repeat(20000, 1)
    draws = inverse_cdf_sample(probs, torch.Generator().manual_seed(0)).squeeze(1)
    frequencies = torch.bincount(draws, minlength=4).float() / len(draws)
    torch.testing.assert_close(frequencies, probs[0], atol=0.015, rtol=0.0)
