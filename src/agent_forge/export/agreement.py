"""How closely an exported format follows the PyTorch model: logits on held-out rows and greedy decoding.

``max_abs_diff`` is the largest |logit difference| over every position and vocabulary entry of the rows;
``top1_agreement`` the share of positions whose argmax is the same; ``greedy_match`` the share of the
PyTorch model's greedy tokens (decoded with its own cache) that the format reproduces before its first
different token (after a divergence the two continuations read different prefixes, so later tokens say
nothing about the format).

The format's side of the greedy check is teacher-forced: one forward pass over prompt + reference tokens,
reading its argmax at each step. Up to the first mismatch the format's own greedy decoding would have read
exactly that prefix, so the matched length is the same as decoding token by token, for one pass instead
of one per token (a full-sequence ONNX graph would otherwise re-run its whole window per token).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

LogitsFn = Callable[[list[int]], np.ndarray]
GreedyFn = Callable[[list[int], int], list[int]]


@dataclass
class Reference:
    """The PyTorch model's outputs, computed once and compared with every format."""

    logits: list[np.ndarray]
    greedy: list[list[int]]


@dataclass
class Agreement:
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    greedy_match: float
    greedy_tokens: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def torch_logits(model: nn.Module) -> LogitsFn:
    def run(ids: list[int]) -> np.ndarray:
        with torch.inference_mode():
            batch = torch.tensor([ids], dtype=torch.long, device=next(model.parameters()).device)
            return model(input_ids=batch, use_cache=False).logits[0].float().cpu().numpy()

    return run


def torch_greedy(model: nn.Module) -> GreedyFn:
    """Greedy decoding with the model's own cache (no stop at <eos>: every format makes n tokens)."""

    def run(prompt: list[int], n: int) -> list[int]:
        device = next(model.parameters()).device
        with torch.inference_mode():
            out = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
            tokens: list[int] = []
            for _ in range(n):
                token = int(out.logits[0, -1].argmax())
                tokens.append(token)
                out = model(input_ids=torch.tensor([[token]], device=device), cache=out.cache, use_cache=True)
        return tokens

    return run


def reference_outputs(logits: LogitsFn, greedy: GreedyFn, rows: Sequence[list[int]],
                      prompts: Sequence[list[int]], n_tokens: int) -> Reference:
    return Reference([logits(list(r)) for r in rows], [greedy(list(p), n_tokens) for p in prompts])


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def greedy_prefix(logits: LogitsFn, prompt: list[int], reference_tokens: list[int]) -> int:
    """How many of ``reference_tokens`` the format's greedy decoding after ``prompt`` reproduces."""
    if not reference_tokens:
        return 0
    out = logits(list(prompt) + list(reference_tokens[:-1]))
    predicted = out[len(prompt) - 1 :].argmax(-1).tolist()
    return common_prefix(predicted, reference_tokens)


def measure_agreement(reference: Reference, logits: LogitsFn, rows: Sequence[list[int]],
                      prompts: Sequence[list[int]], n_tokens: int) -> Agreement:
    """Compare one format with the reference on the same rows and prompts."""
    diffs, same, count = [], 0, 0
    for row, ref in zip(rows, reference.logits, strict=True):
        out = logits(list(row))
        diff = np.abs(out.astype(np.float64) - ref.astype(np.float64))
        diffs.append((float(diff.max()), float(diff.mean())))
        same += int((out.argmax(-1) == ref.argmax(-1)).sum())
        count += ref.shape[0]
    pairs = zip(prompts, reference.greedy, strict=True)
    matched = sum(greedy_prefix(logits, list(p), ref) for p, ref in pairs)
    total = n_tokens * len(prompts)
    mean_diff = float(np.mean([d[1] for d in diffs]))
    return Agreement(max_abs_diff=max(d[0] for d in diffs), mean_abs_diff=mean_diff,
                     top1_agreement=same / max(count, 1), greedy_match=matched / max(total, 1),
                     greedy_tokens=total)
