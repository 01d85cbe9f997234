"""The decoding engine: every generation from our model (think mode, the tool runtime, `generate`, the
dashboard, Phase 6's teacher samples) goes through ``decode``. (``eval.generation.greedy_decode`` keeps a
cache-free loop for any Hugging Face causal LM, the Llama baseline of the benchmarks included.)

Prompts decode in left-padded batches through the model's own cache (the attention mask keeps padding out
of attention and out of the memory, as ``model.generate`` does). Prompts share a batch only when their
lengths differ by whole memory chunks: other left padding would shift the memory's chunk boundaries
against training's and change some greedy choices (measured), while whole padded chunks write nothing.
After each token a hook may insert tokens into a row (the tool runtime's executed ``<result>``, think
mode's answer cue after ``</think>``); such rows leave their group with their slice of the cache and go on
as a group of their own, so nothing is recomputed. An ``allowed`` rule may confine a row's next token to a
few ids, given the token before it (grammar-constrained decoding, as llama.cpp's grammars: think mode's
thought opens with a strategy marker). Greedy at temperature 0, else sampled with a seeded
generator (from the top-p nucleus when ``top_p`` < 1); a row stops at its stop token, after
``max_new_tokens`` model tokens, or when a ``watch`` callback says so (stop strings, a streaming client gone).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from agent_forge.data.tokenizer import EOS_ID, PAD_ID

InsertHook = Callable[[int, list[int], int], list[int] | None]  # (row, generated ids, calls so far) -> ids
Watch = Callable[[int, list[int]], bool]  # (row, generated ids) -> stop this row now
Allowed = Callable[[int, int], Sequence[int] | None]  # (row, previous id) -> the only ids the next may be


@dataclass
class Decoded:
    """Generated ids of one row (model tokens and inserted ones), and which were sampled by the model."""

    tokens: list[int] = field(default_factory=list)
    sampled: list[bool] = field(default_factory=list)
    inserts: int = 0
    ended: bool = False  # emitted <eos>

    @property
    def model_tokens(self) -> int:
        return sum(self.sampled)


@dataclass
class _Group:
    rows: list[int]
    feed: torch.Tensor  # (b, n) ids to feed next
    cache: object | None
    mask: torch.Tensor | None = None  # (b, n) attention mask of the left-padded prompts, first feed only


def pick_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None,
                top_p: float = 1.0) -> torch.Tensor:
    """Greedy at temperature 0, else a sample from softmax(logits / T), cut to the top-p nucleus when
    ``top_p`` < 1, drawn with ``generator`` (on CPU)."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    if top_p < 1.0:
        probs = nucleus(probs, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)


def nucleus(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """``probs`` (rows of distributions) renormalised over each row's nucleus: the most likely tokens, in
    order, up to and with the first one at which their mass reaches ``top_p`` (the top token always stays)."""
    ordered, order = probs.sort(dim=-1, descending=True)
    mass_before = ordered.cumsum(dim=-1) - ordered
    ordered = ordered.masked_fill(mass_before >= top_p, 0.0)
    kept = torch.zeros_like(probs).scatter(-1, order, ordered)
    return kept / kept.sum(dim=-1, keepdim=True)


def restrict(logits: torch.Tensor, allowed: Sequence[Sequence[int] | None]) -> torch.Tensor:
    """``logits`` (B, V) with every id outside a row's allowed ids at -inf (rows with None untouched)."""
    if all(ids is None for ids in allowed):
        return logits
    out = logits.clone()
    for row, ids in enumerate(allowed):
        if ids is not None:
            keep = torch.as_tensor(list(ids), dtype=torch.long, device=logits.device)
            out[row] = torch.full_like(out[row], float("-inf")).index_copy(0, keep, logits[row, keep])
    return out


def _select(cache: object, index: list[int], device: torch.device) -> object:
    """A cache holding only rows ``index`` (the original is left untouched)."""
    chosen = copy.copy(cache)
    chosen.batch_select_indices(torch.tensor(index, dtype=torch.long, device=device))  # type: ignore[attr-defined]
    return chosen


@torch.inference_mode()
def decode(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
           temperature: float = 0.0, generator: torch.Generator | None = None,
           hook: InsertHook | None = None, eos_id: int = EOS_ID, top_p: float = 1.0,
           watch: Watch | None = None, allowed: Allowed | None = None) -> list[Decoded]:
    """Continue every prompt until ``eos_id`` or ``max_new_tokens`` model tokens; ``hook`` may insert ids;
    ``watch`` sees a row after each model token that neither ends nor fills it and may stop the row;
    ``allowed`` may confine a row's next token (given the id before it) to a few ids."""
    results = [Decoded() for _ in prompts]
    sampling = _Sampling(temperature, top_p, generator)
    for indices in chunk_aligned_groups(model, prompts):
        group = [prompts[i] for i in indices]
        rules = _Rows(max_new_tokens, _shifted(hook, indices), _shifted(watch, indices), eos_id,
                      _shifted(allowed, indices))
        for index, item in zip(indices, _decode_batch(model, group, sampling, rules), strict=True):
            results[index] = item
    return results


@dataclass(frozen=True)
class _Sampling:
    temperature: float
    top_p: float
    generator: torch.Generator | None


@dataclass(frozen=True)
class _Rows:
    """What decides, per row, when to insert and when to stop."""

    max_new_tokens: int
    hook: InsertHook | None
    watch: Watch | None
    eos_id: int
    allowed: Allowed | None = None


def chunk_aligned_groups(model: nn.Module, prompts: Sequence[Sequence[int]]) -> list[list[int]]:
    """Indices of prompts whose lengths are equal modulo the model's memory chunk (all together for a model
    without one), so left padding only ever adds whole chunks."""
    chunk = int(getattr(getattr(model, "config", None), "mem_chunk", 0) or 0)
    groups: dict[int, list[int]] = {}
    for index, prompt in enumerate(prompts):
        groups.setdefault(len(prompt) % chunk if chunk else 0, []).append(index)
    return list(groups.values())


def _shifted(callback: Callable | None, indices: list[int]) -> Callable | None:
    """A hook or watch as seen from a sub-batch: row numbers of the sub-batch mapped back to the caller's."""
    if callback is None:
        return None
    return lambda row, *rest: callback(indices[row], *rest)


def _decode_batch(model: nn.Module, prompts: Sequence[Sequence[int]], sampling: _Sampling,
                  rules: _Rows) -> list[Decoded]:
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")  # a runtime face has no parameters
    results = [Decoded() for _ in prompts]
    if not prompts:
        return results
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD_ID] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    queue = [_Group(list(range(len(prompts))), ids, None, mask if not bool(mask.all()) else None)]
    while queue:
        _run_group(model, queue.pop(0), queue, results, sampling, rules)
    return results


def _run_group(model: nn.Module, group: _Group, queue: list[_Group], results: list[Decoded],
               sampling: _Sampling, rules: _Rows) -> None:
    rows, feed, cache, mask = group.rows, group.feed, group.cache, group.mask
    device, hook = feed.device, rules.hook
    while rows:
        out = model(input_ids=feed, attention_mask=mask, cache=cache, use_cache=True)
        cache, mask = out.cache, None
        logits = out.logits[:, -1]
        if rules.allowed is not None:  # the last id fed is each row's previous token (prompt, insert or pick)
            logits = restrict(logits, [rules.allowed(row, prev) for row, prev in zip(rows, feed[:, -1].tolist(),
                                                                                        strict=True)])
        chosen = pick_tokens(logits, sampling.temperature, sampling.generator, sampling.top_p)
        keep: list[int] = []
        inserts: dict[int, list[tuple[int, list[int]]]] = {}
        picked = chosen.tolist()  # one device-to-host copy per step
        for position, row in enumerate(rows):
            token, result = picked[position], results[row]
            result.tokens.append(token)
            result.sampled.append(True)
            if token == rules.eos_id:
                result.ended = True
                continue
            if result.model_tokens >= rules.max_new_tokens:
                continue
            if rules.watch is not None and rules.watch(row, result.tokens):
                continue
            extra = hook(row, result.tokens, result.inserts) if hook is not None else None
            if extra:
                inserts.setdefault(len(extra), []).append((position, extra))
            else:
                keep.append(position)
        for items in inserts.values():
            positions = [p for p, _ in items]
            for position, extra in items:
                results[rows[position]].tokens.extend(extra)
                results[rows[position]].sampled.extend([False] * len(extra))
                results[rows[position]].inserts += 1
            ids = torch.tensor([[picked[p], *extra] for p, extra in items], device=device)
            queue.append(_Group([rows[p] for p in positions], ids, _select(cache, positions, device)))
        if keep and len(keep) < len(rows):
            cache = _select(cache, keep, device)
        rows, feed = [rows[p] for p in keep], chosen[keep].unsqueeze(1)
