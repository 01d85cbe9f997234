"""Accuracy by real greedy decoding, for the few places that need the generated text itself.

Code tasks are the main case: an answer that differs from the reference but passes the tests is right,
which only running the generated code can tell. Prompts of equal token length decode together, so no
padding is needed and any causal LM works, including one without a KV cache or position ids.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from agent_forge.data.sandbox import check_code_answers
from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import EOS_ID, PAD_ID, ForgeTokenizer
from agent_forge.eval.heldout import model_device, model_logits
from agent_forge.eval.metrics import mean_by_group


@dataclass(frozen=True)
class GenerationResult:
    """Per-example completions and both notions of right: exact tokens, and exact-or-tests-pass."""

    accuracy: float  # exact match, or for code: the completion passes the tests
    exact_accuracy: float  # generated tokens == answer tokens, then <eos>
    accuracy_by_kind: dict[str, float]
    accuracy_by_level: dict[int, float]
    completions: list[str]
    exact: list[bool]
    correct: list[bool]


@torch.inference_mode()
def greedy_decode(
    model: nn.Module, prompts: Sequence[Sequence[int]], max_new_tokens: int, max_len: int | None = None
) -> list[list[int]]:
    """Greedy continuation of each prompt up to its first ``<eos>`` (excluded) or ``max_new_tokens``."""
    device = model_device(model)
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, prompt in enumerate(prompts):
        by_length[len(prompt)].append(index)
    outputs: list[list[int]] = [[] for _ in prompts]
    for indices in by_length.values():
        ids = torch.tensor([list(prompts[i]) for i in indices], dtype=torch.long, device=device)
        finished = torch.zeros(len(indices), dtype=torch.bool, device=device)
        for _ in range(max_new_tokens):
            window = ids if max_len is None else ids[:, -max_len:]
            logits = model_logits(model, window, torch.ones_like(window))[:, -1]
            next_token = logits.argmax(dim=-1).masked_fill(finished, PAD_ID)
            finished |= next_token == EOS_ID
            ids = torch.cat([ids, next_token[:, None]], dim=1)
            if bool(finished.all()):
                break
        for row, index in enumerate(indices):
            generated = ids[row, len(prompts[index]) :].tolist()
            outputs[index] = generated[: generated.index(EOS_ID) + 1] if EOS_ID in generated else generated
    return outputs


def evaluate_accuracy_by_generation(
    model: nn.Module,
    tokenizer: ForgeTokenizer,
    examples: Sequence[TaskExample],
    max_new_tokens: int = 32,
    max_len: int | None = None,
    code_timeout_s: float = 1.0,
) -> GenerationResult:
    """Decode each prompt greedily and score it; code completions also get their tests run."""
    was_training = model.training
    model.eval()
    try:
        prompts = tokenizer.encode_batch([e.prompt for e in examples], bos=True)
        generated = greedy_decode(model, prompts, max_new_tokens, max_len)
    finally:
        model.train(was_training)
    answers = tokenizer.encode_batch([e.answer for e in examples], eos=True)
    exact = [tokens == answer for tokens, answer in zip(generated, answers, strict=True)]
    completions = [tokenizer.decode([t for t in tokens if t != EOS_ID]) for tokens in generated]
    passed = check_code_answers(examples, completions, code_timeout_s)
    correct = [a or b for a, b in zip(exact, passed, strict=True)]
    n = max(len(examples), 1)
    return GenerationResult(
        accuracy=sum(correct) / n,
        exact_accuracy=sum(exact) / n,
        accuracy_by_kind=mean_by_group(correct, [e.kind for e in examples]),
        accuracy_by_level=mean_by_group(correct, [e.level for e in examples]),
        completions=completions,
        exact=exact,
        correct=correct,
    )
