"""Greedy thinking on held-out prompts through the stream API, and teacher-forced answer scoring.

Every prompt of a batch is one stream anchored at the last token of its body, so all prompts decode
together with a key/value cache and no padding inside the streams. Thinking and answering both run as
streams, with and without a thought alike, so "with against without" compares the same computation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agent_forge.data.tokenizer import EOS_ID, PAD_ID
from agent_forge.model.streams import PrefixState
from agent_forge.reasoning.thoughts import THINK_ID


@dataclass
class Prefixes:
    """The bodies of a batch of prompts, right-padded, with their last positions (the stream anchors)."""

    state: PrefixState
    batch_index: torch.Tensor
    anchors: torch.Tensor

    @property
    def first_token(self) -> torch.Tensor:
        """The model's own choice right after each body (is it ``<think>``?)."""
        return self.state.logits[self.batch_index, self.anchors].argmax(-1)


@torch.no_grad()
def encode_prefixes(model: torch.nn.Module, bodies: Sequence[Sequence[int]]) -> Prefixes:
    device = next(model.parameters()).device
    width = max(len(b) for b in bodies)
    ids = torch.full((len(bodies), width), PAD_ID, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for row, body in enumerate(bodies):
        ids[row, : len(body)] = torch.tensor(list(body), device=device)
        mask[row, : len(body)] = 1
    lengths = mask.sum(1)
    state = model.prefix_state(ids, mask)
    return Prefixes(state, torch.arange(len(bodies), device=device), lengths - 1)


@dataclass
class Thinking:
    """Greedy continuations after a forced ``<think>``; ``logprobs`` are those of the chosen tokens."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    seconds: float
    cache_bytes: int


@torch.no_grad()
def greedy_thinking(model: torch.nn.Module, prefixes: Prefixes, max_tokens: int) -> Thinking:
    """Decode all streams together until each has written ``<eos>`` or ``max_tokens`` tokens."""
    started = time.perf_counter()
    streams = len(prefixes.batch_index)
    token = torch.full((streams, 1), THINK_ID, dtype=torch.long, device=prefixes.anchors.device)
    out = model.stream_forward(token, model.branch(prefixes.state, prefixes.batch_index, prefixes.anchors))
    finished = torch.zeros(streams, dtype=torch.bool, device=token.device)
    chosen, scores = [], []
    for _ in range(max_tokens):
        logp = F.log_softmax(out.logits[:, -1].float(), dim=-1)
        token = logp.argmax(-1, keepdim=True)
        chosen.append(token.masked_fill(finished.unsqueeze(1), PAD_ID))
        scores.append(logp.gather(-1, token))
        finished |= token.squeeze(1) == EOS_ID
        if bool(finished.all()):
            break
        out = model.stream_forward(token, out.cache)
    cache_bytes = sum(t.numel() * t.element_size() for t in (*out.cache.keys, *out.cache.values))
    tokens, logps = torch.cat(chosen, 1).tolist(), torch.cat(scores, 1).tolist()
    trimmed = [_until_eos(row) for row in tokens]
    return Thinking(
        trimmed,
        [lp[: len(row)] for lp, row in zip(logps, trimmed, strict=True)],
        time.perf_counter() - started,
        cache_bytes,
    )


def _until_eos(row: list[int]) -> list[int]:
    return row[: row.index(EOS_ID) + 1] if EOS_ID in row else row


@torch.no_grad()
def score_continuations(
    model: torch.nn.Module, prefixes: Prefixes, rows: Sequence[Sequence[int]], score_from: Sequence[int]
) -> tuple[list[float], list[bool]]:
    """Teacher-forced log-likelihood of rows[s][score_from[s]:] after each body, and exact argmax match."""
    device = prefixes.anchors.device
    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), PAD_ID, dtype=torch.long, device=device)
    scored = torch.zeros_like(tokens, dtype=torch.bool)
    for s, row in enumerate(rows):
        tokens[s, : len(row)] = torch.tensor(list(row), device=device)
        scored[s, score_from[s] : len(row)] = True
    first = prefixes.state.logits[prefixes.batch_index, prefixes.anchors].unsqueeze(1)
    logits = first
    if width > 1:
        out = model.stream_forward(
            tokens[:, :-1], model.branch(prefixes.state, prefixes.batch_index, prefixes.anchors)
        )
        logits = torch.cat((first, out.logits), dim=1)
    logp = F.log_softmax(logits.float(), dim=-1)
    picked = logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    right = (logits.argmax(-1) == tokens) | ~scored
    ll = (picked * scored).sum(1)
    return ll.tolist(), (right.all(1) & scored.any(1)).tolist()
