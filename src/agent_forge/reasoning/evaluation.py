"""Held-out evaluation of thinking: validity, coherence and the anti-theater checks of spec 2.3.6.

For each held-out task the model thinks greedily after ``body <think>`` (``generation``). Then:
- validity: a closed, non-degenerate thought, the task's cue, an answer in the task's format, ``<eos>``;
- coherence per thought (``scoring``): semantic, logical, relevance, fluency, weights 0.30/0.30/0.25/0.15;
- accuracy with thoughts (answer after the model's own thought and the cue) against without (answer right
  after the cue), both teacher-forced exact match (= greedy exact match);
- predictive power: share of tasks whose right answer becomes more likely after the thought;
- correlation of coherence with correctness (Pearson; 0 when either side is constant).
``theater_detected`` is true when any of the spec's criteria fails (improvement > 0.02, predictive power
> 0.5, correlation > 0.3). Figures are reported as measured, good or bad.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.reasoning.consistency import logical_consistency, relevance
from agent_forge.reasoning.data import split_prompt
from agent_forge.reasoning.generation import (
    greedy_continue,
    next_tokens,
    score_continuations,
    sequence_cache_bytes,
)
from agent_forge.reasoning.scoring import (
    COHERENCE_WEIGHTS,
    Coherence,
    ParsedThinking,
    fluency,
    parse_thinking,
)
from agent_forge.reasoning.semantic import SentenceEmbedder
from agent_forge.reasoning.thoughts import END_THINK_ID, THINK_ID

MIN_IMPROVEMENT, MIN_PREDICTIVE_POWER, MIN_CORRELATION = 0.02, 0.5, 0.3


@dataclass
class ThinkingReport:
    """Per-task records and the aggregated figures (``metrics``, flat floats)."""

    parsed: list[ParsedThinking]
    coherence: list[Coherence]
    correct_with: list[bool]
    correct_without: list[bool]
    ll_gain: list[float]
    thoughts: list[str]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def theater_detected(self) -> bool:
        return bool(self.metrics["theater_detected"])


def evaluate_thinking(
    model: torch.nn.Module,
    tokenizer: ForgeTokenizer,
    tasks: Sequence[TaskExample],
    max_tokens: int,
    embedder: SentenceEmbedder | None = None,
    coherence_threshold: float = 0.70,
) -> ThinkingReport:
    """Think, parse, score and ablate on ``tasks``; the model is left in its previous training mode."""
    was_training = model.training
    model.eval()
    try:
        parts = [split_prompt(t) for t in tasks]
        bodies = tokenizer.encode_batch([b for b, _ in parts], bos=True)
        first = next_tokens(model, bodies)
        thinking = greedy_continue(model, [[*b, THINK_ID] for b in bodies], max_tokens)
        cues = tokenizer.encode_batch([c for _, c in parts])
        answers = tokenizer.encode_batch([t.answer for t in tasks], eos=True)
        parsed = [
            parse_thinking(tokenizer, g, c, t.kind, END_THINK_ID)
            for g, (_, c), t in zip(thinking.tokens, parts, tasks, strict=True)
        ]
        with_ll, with_ok, without_ll, without_ok = _ablation(model, bodies, parsed, cues, answers)
    finally:
        model.train(was_training)
    texts = [tokenizer.decode(p.thought_ids) for p in parsed]
    coherence = _coherence(texts, tasks, parts, thinking.logprobs, parsed, embedder)
    n_answer = [len(a) for a in answers]
    gains = [(w - wo) / n for w, wo, n in zip(with_ll, without_ll, n_answer, strict=True)]
    report = ThinkingReport(parsed, coherence, with_ok, without_ok, gains, texts)
    report.metrics = _aggregate(report, thinking.seconds, coherence_threshold, embedder is not None)
    report.metrics["think_first_rate"] = sum(t == THINK_ID for t in first) / max(len(first), 1)
    per_thought = sequence_cache_bytes(model, max(len(b) for b in bodies) + max_tokens) if bodies else 0
    report.metrics["stream_cache_mb"] = per_thought * len(tasks) / 1e6  # the caches of all the thoughts
    return report


def _ablation(
    model: torch.nn.Module,
    bodies: list[list[int]],
    parsed: list[ParsedThinking],
    cues: list[list[int]],
    answers: list[list[int]],
) -> tuple[list[float], list[bool], list[float], list[bool]]:
    """Answer likelihood and exact match after the model's own thought, and with no thought at all."""
    rows = list(zip(bodies, parsed, cues, strict=True))
    thought_heads = [[*b, THINK_ID, *p.thought_ids, END_THINK_ID, *c] for b, p, c in rows]
    with_ll, with_ok = score_continuations(model, thought_heads, answers)
    without_ll, without_ok = score_continuations(model, [[*b, *c] for b, _, c in rows], answers)
    return with_ll, with_ok, without_ll, without_ok


def _coherence(
    texts: list[str],
    tasks: Sequence[TaskExample],
    parts: list[tuple[str, str]],
    logprobs: list[list[float]],
    parsed: list[ParsedThinking],
    embedder: SentenceEmbedder | None,
) -> list[Coherence]:
    plain = [t.replace("<step>", " ").strip() for t in texts]
    semantic = embedder.similarity(plain, [b for b, _ in parts]) if embedder else [0.0] * len(texts)
    result = []
    for text, task, sem, lp, p in zip(texts, tasks, semantic, logprobs, parsed, strict=True):
        thought_lp = lp[: len(p.thought_ids)]
        result.append(
            Coherence(
                max(0.0, sem), logical_consistency(text, task), relevance(text, task), fluency(thought_lp)
            )
        )
    return result


def _aggregate(report: ThinkingReport, seconds: float, threshold: float, semantic: bool) -> dict[str, float]:
    n = max(len(report.parsed), 1)
    scores = [c.score if semantic else _without_semantic(c) for c in report.coherence]
    acc_with, acc_without = _mean(report.correct_with), _mean(report.correct_without)
    predictive = _mean([g > 0 for g in report.ll_gain])
    correlation = pearson(scores, [float(x) for x in report.correct_with])
    improvement = acc_with - acc_without
    theater = (
        improvement <= MIN_IMPROVEMENT or predictive <= MIN_PREDICTIVE_POWER or correlation <= MIN_CORRELATION
    )
    return {
        "thoughts_generated": float(len(report.parsed)),
        "thoughts_valid": float(sum(p.valid for p in report.parsed)),
        "validity_rate": _mean([p.valid for p in report.parsed]),
        "well_formed_rate": _mean([p.well_formed for p in report.parsed]),
        "answer_format_rate": _mean([p.format_ok for p in report.parsed]),
        "degenerate_rate": _mean([p.degenerate for p in report.parsed]),
        "avg_coherence": _mean(scores),
        "coherent_rate": _mean([s >= threshold for s in scores]),
        "avg_semantic_similarity": _mean([c.semantic for c in report.coherence]),
        "avg_logical_consistency": _mean([c.logical for c in report.coherence]),
        "avg_relevance": _mean([c.relevance for c in report.coherence]),
        "avg_fluency": _mean([c.fluency for c in report.coherence]),
        "avg_thought_tokens": _mean([len(p.thought_ids) for p in report.parsed]),
        "accuracy_with_thoughts": acc_with,
        "accuracy_without_thoughts": acc_without,
        "accuracy_improvement": improvement,
        "answer_ll_gain": _mean(report.ll_gain),
        "predictive_power": predictive,
        "coherence_correctness_corr": correlation,
        "theater_detected": float(theater),
        "ms_per_thought": seconds * 1000.0 / n,
        "semantic_scored": float(semantic),
    }


def _without_semantic(c: Coherence) -> float:
    """The weighted score over the three other parts, renormalised, when no embedder is given."""
    rest = {k: w for k, w in COHERENCE_WEIGHTS.items() if k != "semantic"}
    values = {"logical": c.logical, "relevance": c.relevance, "fluency": c.fluency}
    return sum(rest[k] * min(1.0, max(0.0, values[k])) for k in rest) / sum(rest.values())


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; 0.0 when either side has no variance (nothing to correlate)."""
    n = len(x)
    if n < 2:
        return 0.0
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx, syy = sum((a - mx) ** 2 for a in x), sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else 0.0


def _mean(values: Sequence[float | bool]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0
