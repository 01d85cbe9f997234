"""Batched decoding with the model's cache, and the tool runtime on top of it.

All prompts decode as one left-padded batch (the attention mask keeps padding out of attention and out of
the memory, as ``model.generate`` does). After each token a hook may insert tokens into a row: the tool
runtime does so when a row has just emitted a complete call, appending the executed ``<result>...</result>``.
Such rows leave their group with their slice of the cache and continue as a group of their own (rows with
equal-length insertions together), so nothing is recomputed.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from agent_forge.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, ForgeTokenizer
from agent_forge.tools.calls import BUILTIN_TOOLS, Tool, ToolOutcome, execute, final_answer, last_call

InsertHook = Callable[[int, list[int], int], list[int] | None]  # (row, generated ids, calls so far) -> ids


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


def pick_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """Greedy at temperature 0, else a sample from softmax(logits / T) drawn with ``generator`` (on CPU)."""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)


def _select(cache: object, index: list[int], device: torch.device) -> object:
    """A cache holding only rows ``index`` (the original is left untouched)."""
    chosen = copy.copy(cache)
    chosen.batch_select_indices(torch.tensor(index, dtype=torch.long, device=device))  # type: ignore[attr-defined]
    return chosen


@torch.inference_mode()
def decode(model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
           temperature: float = 0.0, generator: torch.Generator | None = None,
           hook: InsertHook | None = None, eos_id: int = EOS_ID) -> list[Decoded]:
    """Continue every prompt until ``<eos>`` or ``max_new_tokens`` model tokens; ``hook`` may insert ids."""
    device = next(model.parameters()).device
    results = [Decoded() for _ in prompts]
    if not prompts:
        return results
    width = max(len(p) for p in prompts)
    ids = torch.tensor([[PAD_ID] * (width - len(p)) + list(p) for p in prompts], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
    queue = [_Group(list(range(len(prompts))), ids, None, mask if not bool(mask.all()) else None)]
    while queue:
        _run_group(model, queue.pop(0), queue, results, max_new_tokens, temperature, generator, hook, eos_id)
    return results


def _run_group(model: nn.Module, group: _Group, queue: list[_Group], results: list[Decoded],
               max_new_tokens: int, temperature: float, generator: torch.Generator | None,
               hook: InsertHook | None, eos_id: int) -> None:
    rows, feed, cache, mask = group.rows, group.feed, group.cache, group.mask
    device = feed.device
    while rows:
        out = model(input_ids=feed, attention_mask=mask, cache=cache, use_cache=True)
        cache, mask = out.cache, None
        chosen = pick_tokens(out.logits[:, -1], temperature, generator)
        keep: list[int] = []
        inserts: dict[int, list[tuple[int, list[int]]]] = {}
        picked = chosen.tolist()  # one device-to-host copy per step
        for position, row in enumerate(rows):
            token, result = picked[position], results[row]
            result.tokens.append(token)
            result.sampled.append(True)
            if token == eos_id:
                result.ended = True
                continue
            if result.model_tokens >= max_new_tokens:
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


# ---- the tool runtime -------------------------------------------------------------------------------

@dataclass
class ToolGeneration:
    """One generation with tools: the text (special tokens kept), the calls executed, the final answer."""

    text: str
    tokens: list[int]
    outcomes: list[ToolOutcome]
    answer: str
    ended: bool


class ToolRuntime:
    """The insert hook that executes calls: after ``</args>`` the call is parsed, run, and answered."""

    def __init__(self, tokenizer: ForgeTokenizer, tools: Mapping[str, Tool] | None = None,
                 max_calls: int = 4) -> None:
        self.tokenizer, self.tools, self.max_calls = tokenizer, dict(tools or BUILTIN_TOOLS), max_calls
        self.args_close = tokenizer.special_id("</args>")
        self.outcomes: dict[int, list[ToolOutcome]] = {}

    def __call__(self, row: int, tokens: list[int], calls: int) -> list[int] | None:
        if tokens[-1] != self.args_close or calls >= self.max_calls:
            return None
        parsed = last_call(self.tokenizer.decode(tokens), self.tools)
        if parsed is None:
            return None
        outcome = execute(parsed, self.tools)
        self.outcomes.setdefault(row, []).append(outcome)
        return self.tokenizer.encode(outcome.result_text)


def generate_many_with_tools(model: nn.Module, tokenizer: ForgeTokenizer, prompts: Sequence[Sequence[int]],
                             max_new_tokens: int = 64, max_calls: int = 4, *, temperature: float = 0.0,
                             generator: torch.Generator | None = None,
                             tools: Mapping[str, Tool] | None = None) -> list[ToolGeneration]:
    """Generate for token-id prompts (``<bos>`` included), executing the calls each row makes."""
    was_training = model.training
    model.eval()
    runtime = ToolRuntime(tokenizer, tools, max_calls)
    try:
        decoded = decode(model, prompts, max_new_tokens, temperature=temperature, generator=generator,
                         hook=runtime if max_calls > 0 else None)
    finally:
        model.train(was_training)
    generations = []
    for row, item in enumerate(decoded):
        text = tokenizer.decode(item.tokens)
        generations.append(ToolGeneration(text, item.tokens, runtime.outcomes.get(row, []),
                                          final_answer(text), item.ended))
    return generations


def generate_with_tools(model: nn.Module, tokenizer: ForgeTokenizer, prompt: str, max_new_tokens: int = 64,
                        max_calls: int = 4, *, temperature: float = 0.0, seed: int = 0,
                        tools: Mapping[str, Tool] | None = None) -> ToolGeneration:
    """Generate from a text prompt; when the model emits a complete call, run it, append the result, go on."""
    ids = [BOS_ID, *tokenizer.encode(prompt)]
    generator = torch.Generator().manual_seed(seed)
    return generate_many_with_tools(model, tokenizer, [ids], max_new_tokens, max_calls,
                                    temperature=temperature, generator=generator, tools=tools)[0]
