"""Thinking on held-out prompts: stream decoding equals plain decoding; the figures follow what the model does."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from reasoning_builders import model_taught, reasoning_tokenizer, smoke_model

from agent_forge.data.tokenizer import EOS_ID
from agent_forge.reasoning.data import reasoning_dataset
from agent_forge.reasoning.evaluation import evaluate_thinking, pearson
from agent_forge.reasoning.generation import greedy_continue, next_tokens, score_continuations, sequence_cache_bytes
from agent_forge.reasoning.thoughts import THINK_ID


def bodies(n: int = 3) -> list[list[int]]:
    return [[1, *range(30 + i, 40 + 2 * i)] for i in range(n)]


@torch.no_grad()
def test_cached_decoding_equals_plain_greedy_decoding_past_memory_chunks():
    model = smoke_model(5, mem_chunk=2).eval()  # thoughts cross many memory chunks; 11, 13, 15 pad by whole chunks
    prompts = [[*b, THINK_ID] for b in bodies()] + [[1, *range(30, 40)], [1, *range(50, 62)]]  # 11, 13, 15, 11, 13
    thinking = greedy_continue(model, prompts, max_tokens=12)
    for prompt, tokens, logprobs in zip(prompts, thinking.tokens, thinking.logprobs, strict=True):
        sequence = list(prompt)
        for _ in range(12):
            sequence.append(int(model(torch.tensor([sequence]), use_cache=False).logits[0, -1].argmax()))
            if sequence[-1] == EOS_ID:
                break
        assert tokens == sequence[len(prompt) :] and len(logprobs) == len(tokens)
    assert sequence_cache_bytes(model, 8) > 0 and next_tokens(model, prompts) == [t[0] for t in thinking.tokens]


@torch.no_grad()
def test_teacher_forced_scores_equal_plain_forward_log_likelihoods():
    model = smoke_model(6, mem_chunk=4).eval()
    heads = bodies()
    rows = [[50, 51, 52, 53], [60, 61], [70, 71, 72]]
    ll, exact = score_continuations(model, heads, rows)
    for head, row, value, right in zip(heads, rows, ll, exact, strict=True):
        logits = model(torch.tensor([[*head, *row]]), use_cache=False).logits[0, len(head) - 1 : -1]
        logp = F.log_softmax(logits, -1).gather(-1, torch.tensor(row).unsqueeze(-1)).squeeze(-1)
        assert math.isclose(value, float(logp.sum()), rel_tol=1e-4, abs_tol=1e-4)
        assert right == bool((logits.argmax(-1) == torch.tensor(row)).all())


def test_pearson_correlation():
    assert math.isclose(pearson([1, 2, 3], [2, 4, 6]), 1.0)
    assert math.isclose(pearson([1, 2, 3], [3, 2, 1]), -1.0)
    assert pearson([1, 1, 1], [0, 1, 0]) == 0.0


def test_an_untrained_model_gets_measured_not_flattered():
    tokenizer = reasoning_tokenizer()
    tasks = [e.task for e in reasoning_dataset(6, seed=40)]
    report = evaluate_thinking(smoke_model(7), tokenizer, tasks, max_tokens=12)
    figures = report.metrics
    assert figures["validity_rate"] == 0.0 and figures["thoughts_generated"] == 6
    assert report.theater_detected and all(math.isfinite(v) for v in figures.values())
    assert figures["semantic_scored"] == 0.0


def test_a_model_that_learned_to_think_is_valid_coherent_and_helped_by_its_thoughts():
    tokenizer = reasoning_tokenizer()
    examples = reasoning_dataset(200, seed=31, kinds=("mc",), levels=(1,))[:4]
    model = model_taught(examples, steps=35)
    report = evaluate_thinking(model, tokenizer, [e.task for e in examples], max_tokens=40)
    figures = report.metrics
    assert figures["validity_rate"] == 1.0 and figures["accuracy_with_thoughts"] == 1.0
    assert figures["avg_logical_consistency"] > 0.9 and figures["avg_relevance"] > 0.5
    assert figures["accuracy_improvement"] == 1.0 - figures["accuracy_without_thoughts"]
    assert [t for t in report.thoughts] == [e.thought for e in examples]


def test_restrict_keeps_only_the_allowed_logits_of_a_row():
    from agent_forge.engine import restrict

    logits = torch.tensor([[1.0, 5.0, 3.0], [2.0, 0.0, 1.0]])
    out = restrict(logits, [[0, 2], None])
    assert out[0].tolist() == [1.0, float("-inf"), 3.0] and out[1].tolist() == [2.0, 0.0, 1.0]
    assert restrict(logits, [None, None]) is logits


@torch.no_grad()
def test_an_allowed_rule_confines_the_token_after_think_and_nothing_else():
    """Greedy with the rule: after <think> the best of the allowed ids, then plain greedy from there; a row
    that never reads <think> decodes as without the rule (the engine's and a runtime's paths alike)."""
    model = smoke_model(5, mem_chunk=2).eval()
    prompts = [[*b, THINK_ID] for b in bodies()] + [[1, *range(30, 40)]]
    markers = [41, 43, 47]
    thinking = greedy_continue(model, prompts, 6, allowed=lambda row, previous: markers if previous == THINK_ID
                               else None)
    for prompt, tokens in zip(prompts[:3], thinking.tokens[:3], strict=True):
        last = model(torch.tensor([prompt]), use_cache=False).logits[0, -1]
        assert tokens[0] == markers[int(last[markers].argmax())]
        assert tokens[1:] == greedy_continue(model, [[*prompt, tokens[0]]], 5).tokens[0]
    assert thinking.tokens[3] == greedy_continue(model, prompts[3:], 6).tokens[0]
