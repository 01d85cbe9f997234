"""Greedy thinking and teacher-forced answer scoring for the thinking evaluations, exact to the model.

Decoding goes through the engine (``agent_forge.engine``: the model's own cache, the attention window and
the memory written every chunk as in training). Scoring is one right-padded forward pass: padding only
follows the positions read, so it changes nothing. The stream API of ``model.streams`` is not used here:
it does not write memory inside a stream, so it matches the model only for continuations inside one
memory chunk (right for Quiet-STaR's 8-token thoughts, wrong for a 60-token thought with 16-token chunks).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from agent_forge.data.tokenizer import EOS_ID, PAD_ID
from agent_forge.engine import Allowed, InsertHook, decode
from agent_forge.eval.heldout import model_device, model_logits


@dataclass
class Thinking:
    """Greedy continuations (up to and with the stop token); ``logprobs`` are those of the chosen tokens."""

    tokens: list[list[int]]
    logprobs: list[list[float]]
    seconds: float


def right_padded(rows: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` ids and attention mask of ``rows``, padded on the right."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD_ID, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for index, row in enumerate(rows):
        ids[index, : len(row)] = torch.tensor(list(row), device=device)
        mask[index, : len(row)] = 1
    return ids, mask


@torch.no_grad()
def next_tokens(model: torch.nn.Module, rows: Sequence[Sequence[int]]) -> list[int]:
    """The greedy next token after each row."""
    ids, mask = right_padded(rows, model_device(model))
    logits = model_logits(model, ids, mask)
    last = torch.tensor([len(r) - 1 for r in rows], device=ids.device)
    return logits[torch.arange(len(rows), device=ids.device), last].argmax(-1).tolist()


def greedy_continue(model: torch.nn.Module, prompts: Sequence[Sequence[int]], max_tokens: int,
                    stop_id: int = EOS_ID, hook: InsertHook | None = None, allowed: Allowed | None = None
                    ) -> Thinking:
    """Per prompt, the greedy tokens after it up to and with ``stop_id``, at most ``max_tokens`` of the
    model's own (``hook`` may insert more, e.g. tool results; ``allowed`` may confine a token), through the
    decoding engine
    (``agent_forge.engine``, exact to the model's forward) or a bundle runtime's own cached decoding; the
    log-probabilities of the tokens come from one teacher-forced pass."""
    started = time.perf_counter()
    if hasattr(model, "greedy"):  # a runtime with its own cached decoding (an edge bundle's)
        tokens = [model.greedy(list(p), max_tokens, stop_id, hook=_row_hook(hook, row),
                               allowed=_row_rule(allowed, row)) for row, p in enumerate(prompts)]
    else:
        tokens = [item.tokens for item in decode(model, prompts, max_tokens, eos_id=stop_id, hook=hook,
                                                 allowed=allowed)]
    return Thinking(tokens, token_logprobs(model, prompts, tokens), time.perf_counter() - started)


def _row_hook(hook: InsertHook | None, row: int) -> Callable[[list[int], int], list[int] | None] | None:
    """The engine's hook for one row, as a one-row runtime calls it (tokens so far, inserts so far)."""
    return None if hook is None else (lambda tokens, inserts: hook(row, tokens, inserts))


def _row_rule(allowed: Allowed | None, row: int) -> Callable[[int], Sequence[int] | None] | None:
    """The engine's ``allowed`` rule for one row, as a one-row runtime calls it (the previous id)."""
    return None if allowed is None else (lambda previous: allowed(row, previous))


def score_continuations(model: torch.nn.Module, heads: Sequence[Sequence[int]],
                        continuations: Sequence[Sequence[int]]) -> tuple[list[float], list[bool]]:
    """Teacher-forced log-likelihood of each continuation after its head, and whether greedy decoding
    would write it exactly (argmax at every position)."""
    scored = _teacher_forced(model, heads, continuations)
    return [float(logp.sum()) for logp, _ in scored], [bool(ok.all()) and len(ok) > 0 for _, ok in scored]


def token_logprobs(model: torch.nn.Module, heads: Sequence[Sequence[int]],
                   continuations: Sequence[Sequence[int]]) -> list[list[float]]:
    """Per continuation, the log-probability of each of its tokens after its head (teacher-forced)."""
    return [logp.tolist() for logp, _ in _teacher_forced(model, heads, continuations)]


@torch.no_grad()
def _teacher_forced(model: torch.nn.Module, heads: Sequence[Sequence[int]],
                    continuations: Sequence[Sequence[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per pair, one right-padded forward: the log-probability of each continuation token and whether it
    is the argmax there."""
    if not heads:
        return []
    rows = [[*h, *c] for h, c in zip(heads, continuations, strict=True)]
    ids, mask = right_padded(rows, model_device(model))
    logp = F.log_softmax(model_logits(model, ids, mask).float(), -1)
    out = []
    for k, (head, row) in enumerate(zip(heads, rows, strict=True)):
        positions = torch.arange(len(head) - 1, len(row) - 1, device=ids.device)
        targets = ids[k, len(head) : len(row)]
        out.append((logp[k, positions, targets], logp[k, positions].argmax(-1) == targets))
    return out


@torch.no_grad()
def sequence_cache_bytes(model: torch.nn.Module, length: int) -> int:
    """Bytes of the cache one sequence of ``length`` tokens leaves behind (what one thought costs)."""
    ids = torch.full((1, length), EOS_ID, dtype=torch.long, device=model_device(model))
    return _cache_bytes(model(input_ids=ids, use_cache=True).cache)


def _cache_bytes(cache: object) -> int:
    """Bytes of the tensors a ``ForgeCache`` holds (0 for any other cache)."""
    total = 0
    for state in getattr(cache, "states", []) or []:
        if state is None:
            continue
        for value in (state.keys, state.values, *vars(state.memory).values()):
            total += value.numel() * value.element_size() if isinstance(value, torch.Tensor) else 0
    return total
