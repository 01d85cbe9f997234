"""Thought streams for Quiet-STaR: equal to plain forwards, isolated from each other, differentiable."""

from __future__ import annotations

import pytest
import torch
from model_builders import build_model, random_ids

BATCH_INDEX = torch.tensor([0, 1, 0, 1, 0, 1])
ANCHORS = torch.tensor([24, 25, 31, 40, 3, 0])  # chunk 8: positions p+1 .. p+4 stay inside one chunk


def plain_logits(model, ids, batch: int, anchor: int, tokens: torch.Tensor) -> torch.Tensor:
    sequence = torch.cat((ids[batch, : anchor + 1], tokens))[None]
    return model(sequence).logits[0, anchor + 1 :]


@pytest.mark.parametrize("static_act", [False, True])
def test_streams_equal_plain_forwards_within_a_memory_chunk(static_act: bool) -> None:
    model = build_model(seed=1, static_act=static_act).eval()
    ids = random_ids(2, 48)
    tokens = random_ids(6, 3, seed=5)
    with torch.no_grad():
        state = model.prefix_state(ids)
        first = model.stream_forward(tokens[:, :1], model.branch(state, BATCH_INDEX, ANCHORS))
        second = model.stream_forward(tokens[:, 1:], first.cache)
        logits = torch.cat((first.logits, second.logits), dim=1)
        for s in range(6):
            expected = plain_logits(model, ids, int(BATCH_INDEX[s]), int(ANCHORS[s]), tokens[s])
            torch.testing.assert_close(logits[s], expected, atol=1e-5, rtol=1e-5)
    assert logits.shape == (6, 3, 512) and second.hidden.shape == (6, 2, 64)
    torch.testing.assert_close(model.lm_head(second.hidden), second.logits, atol=1e-5, rtol=1e-5)


def test_prefix_state_logits_are_the_plain_forward_logits() -> None:
    model = build_model(seed=2).eval()
    ids = random_ids(2, 30)
    with torch.no_grad():
        state = model.prefix_state(ids)
        torch.testing.assert_close(state.logits, model(ids).logits)
    assert len(state.keys) == 2 and state.keys[0].shape == (2, 4, 30, 16)
    assert state.boundaries[0].shape == (2, 30 // 8 + 1, 16, 16)


def test_another_streams_tokens_never_change_this_stream() -> None:
    model = build_model(seed=3).eval()
    ids = random_ids(2, 44)
    tokens = random_ids(6, 4, seed=6)
    changed = tokens.clone()
    changed[2] = (changed[2] + 11) % 512  # stream 2 shares sequence 0 with streams 0 and 4
    with torch.no_grad():
        state = model.prefix_state(ids)
        base = model.stream_forward(tokens, model.branch(state, BATCH_INDEX, ANCHORS)).logits
        other = model.stream_forward(changed, model.branch(state, BATCH_INDEX, ANCHORS)).logits
    keep = [0, 1, 3, 4, 5]
    torch.testing.assert_close(other[keep], base[keep])
    assert not torch.allclose(other[2], base[2])


def test_past_a_chunk_boundary_streams_keep_reading_the_memory_of_their_anchor() -> None:
    """Thought tokens write no memory: across a boundary the stream differs from a plain forward,
    and equals a plain forward of a model whose memory never receives the thought chunk."""
    model = build_model(seed=4).eval()
    ids = random_ids(1, 40)
    tokens = random_ids(1, 6, seed=7)  # anchor 5: positions 6..11 cross the boundary at 8
    with torch.no_grad():
        state = model.prefix_state(ids)
        out = model.stream_forward(tokens, model.branch(state, torch.tensor([0]), torch.tensor([5])))
        plain = plain_logits(model, ids, 0, 5, tokens[0])
    torch.testing.assert_close(out.logits[0, :2], plain[:2], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(out.logits[0, 2:], plain[2:], atol=1e-5)


def test_streams_carry_gradients_to_the_weights() -> None:
    model = build_model(seed=5).train()
    ids = random_ids(2, 24)
    state = model.prefix_state(ids)
    out = model.stream_forward(
        random_ids(6, 2, seed=8), model.branch(state, BATCH_INDEX, ANCHORS.clamp_max(23))
    )
    out.logits.log_softmax(-1)[..., 7].sum().backward()
    assert model.model.layers[0].attn.q_proj.weight.grad.abs().sum() > 0
    assert model.model.layers[0].memory.qkv.weight.grad.abs().sum() > 0


def test_branch_rejects_anchors_outside_the_prefix() -> None:
    model = build_model(seed=6).eval()
    with torch.no_grad():
        state = model.prefix_state(random_ids(1, 10))
    with pytest.raises(ValueError, match="anchor"):
        model.branch(state, torch.tensor([0]), torch.tensor([10]))
