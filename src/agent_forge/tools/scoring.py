"""Tool-use figures of a model on tasks with known answers, measured by really running the tool runtime.

Generation figures (format validity, accuracy) are all-or-nothing and stay at zero for a model too small to
call tools at all, so two teacher-forced figures go with them: the mean log-probability per token of the
reference call after the query, and the probability that the model opens a call (``<tool>``) right away.
They show whether a bake moved the unprompted model towards the prompted one before generations change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import torch
from torch import nn

from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import BOS_ID, PAD_ID, ForgeTokenizer
from agent_forge.tools.calls import ToolCall, format_call, parse_calls
from agent_forge.tools.runtime import ToolGeneration, generate_many_with_tools


@dataclass
class ToolReport:
    """Shares over the examples; ``format_valid``: at least one call and every call well-formed."""

    format_valid: float
    call_rate: float
    result_correct: float  # a call ran and returned the task's expected result
    accuracy: float  # the final answer equals the expected answer
    n: int
    call_logprob: float = 0.0  # mean log-probability per token of the reference call, teacher-forced
    p_tool: float = 0.0  # mean probability of <tool> as the first token after the query
    texts: list[str] = field(default_factory=list)

    def metrics(self, prefix: str) -> dict[str, float]:
        keys = ("format_valid", "call_rate", "result_correct", "accuracy", "call_logprob", "p_tool")
        return {f"{prefix}/{key}": float(getattr(self, key)) for key in keys}


def same_answer(given: str, expected: str) -> bool:
    """Numbers compare by value (``"2000.0"`` == ``"2000"``), anything else as stripped text."""
    given, expected = given.strip(), expected.strip()
    try:
        return Fraction(given) == Fraction(expected)
    except (ValueError, ZeroDivisionError):
        return given == expected


def score_generation(generation: ToolGeneration, example: TaskExample) -> tuple[bool, bool, bool, bool]:
    """(format valid, made a call, result correct, answer correct) of one generation."""
    parsed = parse_calls(generation.text)
    expected = str(example.meta.get("result", example.answer.strip()))
    result_ok = any(o.ok and same_answer(o.value, expected) for o in generation.outcomes)
    valid = bool(parsed) and all(p.ok for p in parsed)
    return valid, bool(parsed), result_ok, same_answer(generation.answer, example.answer)


def evaluate_tool_use(model: nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                      prefix_ids: Sequence[int] = (), max_new_tokens: int = 48,
                      max_calls: int = 2) -> ToolReport:
    """Greedy generation with the runtime on each example (after ``prefix_ids``, e.g. a prompt), scored."""
    return evaluate_tool_use_variants(model, tokenizer, examples, {"": prefix_ids}, max_new_tokens,
                                      max_calls)[""]


def evaluate_tool_use_variants(model: nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                               prefixes: Mapping[str, Sequence[int]], max_new_tokens: int = 48,
                               max_calls: int = 2) -> dict[str, ToolReport]:
    """One report per named prefix (e.g. with and without a prompt), all decoded in a single batch."""
    queries = tokenizer.encode_batch([e.prompt for e in examples])
    prompts = [[BOS_ID, *prefix, *ids] for prefix in prefixes.values() for ids in queries]
    generations = generate_many_with_tools(model, tokenizer, prompts, max_new_tokens, max_calls)
    reports = {}
    for part, name in enumerate(prefixes):
        chunk = generations[part * len(examples) : (part + 1) * len(examples)]
        scores = [score_generation(g, e) for g, e in zip(chunk, examples, strict=True)]
        n = max(len(scores), 1)
        share = [sum(s[i] for s in scores) / n for i in range(4)]
        logprob, p_tool = call_likelihood(model, tokenizer, examples, prefixes[name])
        reports[name] = ToolReport(*share, n=len(scores), call_logprob=logprob, p_tool=p_tool,
                                   texts=[g.text for g in chunk])
    return reports


@torch.no_grad()
def call_likelihood(model: nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                    prefix_ids: Sequence[int] = ()) -> tuple[float, float]:
    """(mean log-prob per token of each example's reference call, mean P(<tool> first)) after the query."""
    rows, starts, calls = [], [], []
    for example in examples:
        query = tokenizer.encode(example.prompt)
        call = tokenizer.encode(format_call(ToolCall(example.meta["tool"], example.meta["args"])))
        rows.append([BOS_ID, *prefix_ids, *query, *call])
        starts.append(len(prefix_ids) + len(query))  # the position whose logits predict the first call token
        calls.append(call)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [PAD_ID] * (width - len(r)) for r in rows], device=device)
    logprobs = torch.log_softmax(model(input_ids=ids).logits.float(), dim=-1)  # right padding: causal model
    model.train(was_training)
    total, p_tool = 0.0, 0.0
    for row, (start, call) in enumerate(zip(starts, calls, strict=True)):
        positions = torch.arange(start, start + len(call), device=device)
        targets = torch.tensor(call, device=device)
        total += float(logprobs[row, positions, targets].mean())
        p_tool += float(logprobs[row, start, call[0]].exp())
    return total / len(rows), p_tool / len(rows)
