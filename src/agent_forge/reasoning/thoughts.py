"""Parallel thoughts (Quiet-STaR): n thoughts at many positions of a batch, one batched pass per token.

A thought anchored at position p of a sequence is ``<think> t_1 .. t_L </think>`` fed after the prefix
``x_0 .. x_p`` through the model's stream API (``agent_forge.model.streams``): every thought of the batch
is a stream, all streams advance together, and the attention mask keeps each one to its own prefix and its
own tokens. Sampling runs without gradients; ``score_thoughts`` then re-reads each whole thought plus the
true next tokens in one differentiable pass, which gives the policy log-probability of the thought and the
thought-conditioned predictions of the next tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agent_forge.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, UNK_ID
from agent_forge.model.streams import PrefixState

THINK_ID = SPECIAL_TOKENS.index("<think>")
END_THINK_ID = SPECIAL_TOKENS.index("</think>")
BANNED_IN_THOUGHT = (PAD_ID, BOS_ID, EOS_ID, UNK_ID, THINK_ID, END_THINK_ID)


@dataclass(frozen=True)
class ThoughtConfig:
    """How many thoughts per position, how long, and which tokens a thought may not contain."""

    num_thoughts: int
    length: int
    banned: tuple[int, ...] = BANNED_IN_THOUGHT


@dataclass
class ThoughtScores:
    """Per stream: the thought's log-probability, and its predictions of the next true tokens."""

    policy_logp: torch.Tensor  # (S,)
    talk_logits: torch.Tensor  # (S, k, V)
    talk_hidden: torch.Tensor  # (S, k, d)


def expand_anchors(anchors: torch.Tensor, num_thoughts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, P) anchor positions -> (batch_index, anchor_pos) of B*P*n streams, ordered (b, p, thought)."""
    batch, per_seq = anchors.shape
    batch_index = torch.arange(batch, device=anchors.device).repeat_interleave(per_seq * num_thoughts)
    return batch_index, anchors.reshape(-1).repeat_interleave(num_thoughts)


def sample_anchors(
    seq_len: int,
    batch: int,
    per_seq: int,
    lookahead: int,
    generator: torch.Generator,
    device: torch.device | None = None,
) -> torch.Tensor:
    """(B, P) distinct positions per row that leave ``lookahead`` true tokens after them."""
    last = seq_len - lookahead  # anchors 0 .. last-1 have tokens p+1 .. p+lookahead
    if per_seq > last:
        raise ValueError(
            f"{per_seq} positions per sequence do not fit {seq_len} tokens with lookahead {lookahead}"
        )
    scores = torch.rand(batch, last, generator=generator)
    return scores.topk(per_seq, dim=1).indices.sort(dim=1).values.to(device or torch.device("cpu"))


def masked_logits(logits: torch.Tensor, banned: tuple[int, ...]) -> torch.Tensor:
    """Logits with the banned tokens removed from the distribution (a thought's policy)."""
    if not banned:
        return logits.float()
    index = torch.tensor(banned, device=logits.device)
    return logits.float().index_fill(-1, index, float("-inf"))


def inverse_cdf_sample(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(S, V) probabilities -> (S, 1) samples; one uniform per row (torch.multinomial draws one per entry)."""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator, device=generator.device).to(probs.device)
    index = torch.searchsorted(cdf, u * cdf[:, -1:])
    return index.clamp_max(probs.shape[-1] - 1)


@torch.no_grad()
def sample_thoughts(
    model: torch.nn.Module,
    state: PrefixState,
    batch_index: torch.Tensor,
    anchor_pos: torch.Tensor,
    config: ThoughtConfig,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """(S, L) thought tokens, all streams stepped together; greedy when ``generator`` is None."""
    streams = len(batch_index)
    token = torch.full((streams, 1), THINK_ID, dtype=torch.long, device=batch_index.device)
    out = model.stream_forward(token, model.branch(state, batch_index, anchor_pos))
    chosen = []
    for step in range(config.length):
        logits = masked_logits(out.logits[:, -1], config.banned)
        if generator is None:
            token = logits.argmax(dim=-1, keepdim=True)
        else:
            token = inverse_cdf_sample(F.softmax(logits, dim=-1), generator)
        chosen.append(token)
        if step + 1 < config.length:
            out = model.stream_forward(token, out.cache)
    return torch.cat(chosen, dim=1)


def score_thoughts(
    model: torch.nn.Module,
    state: PrefixState,
    batch_index: torch.Tensor,
    anchor_pos: torch.Tensor,
    thoughts: torch.Tensor,
    true_next: torch.Tensor,
    config: ThoughtConfig,
) -> ThoughtScores:
    """One pass over ``<think> thought </think> true_next[:-1]`` for every stream (differentiable)."""
    streams, length = thoughts.shape
    open_ = torch.full((streams, 1), THINK_ID, dtype=torch.long, device=thoughts.device)
    close = torch.full((streams, 1), END_THINK_ID, dtype=torch.long, device=thoughts.device)
    tokens = torch.cat((open_, thoughts, close, true_next[:, :-1]), dim=1)
    out = model.stream_forward(tokens, model.branch(state, batch_index, anchor_pos))
    policy = F.log_softmax(masked_logits(out.logits[:, :length], config.banned), dim=-1)
    policy_logp = policy.gather(-1, thoughts.unsqueeze(-1)).squeeze(-1).sum(-1)
    return ThoughtScores(policy_logp, out.logits[:, length + 1 :], out.hidden[:, length + 1 :])


def base_predictions(
    state: PrefixState, batch_index: torch.Tensor, anchor_pos: torch.Tensor, lookahead: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain (no-thought) logits and hidden states at positions p .. p+k-1 of every stream."""
    offsets = torch.arange(lookahead, device=anchor_pos.device)
    positions = anchor_pos.unsqueeze(1) + offsets
    rows = batch_index.unsqueeze(1).expand_as(positions)
    return state.logits[rows, positions], state.hidden[rows, positions]


def true_next_tokens(
    ids: torch.Tensor, batch_index: torch.Tensor, anchor_pos: torch.Tensor, lookahead: int
) -> torch.Tensor:
    """(S, k): the tokens x_{p+1} .. x_{p+k} each stream must predict."""
    positions = anchor_pos.unsqueeze(1) + 1 + torch.arange(lookahead, device=anchor_pos.device)
    return ids[batch_index.unsqueeze(1).expand_as(positions), positions]
