"""Persona adherence of generations, measured on the text a model writes.

Two figures: the share of generations that show a persona marker (its name by default), and the mean
bag-of-tokens cosine similarity between each unprompted generation and the prompted model's generation
for the same query. No sentence-embedding model is used: the measure must run offline on any machine.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence


def marker_share(texts: Sequence[str], markers: Sequence[str]) -> float:
    """Share of texts containing at least one marker (case-insensitive)."""
    if not texts or not markers:
        return 0.0
    lowered = [m.lower() for m in markers]
    return sum(any(m in text.lower() for m in lowered) for text in texts) / len(texts)


def bag_cosine(a: Sequence[int], b: Sequence[int]) -> float:
    """Cosine similarity of the token-count vectors of two token sequences (0 when one is empty)."""
    ca, cb = Counter(a), Counter(b)
    dot = sum(count * cb[token] for token, count in ca.items())
    norm = math.sqrt(sum(c * c for c in ca.values())) * math.sqrt(sum(c * c for c in cb.values()))
    return dot / norm if norm else 0.0


def mean_pair_cosine(generated: Sequence[Sequence[int]], reference: Sequence[Sequence[int]]) -> float:
    """Mean ``bag_cosine`` of generation i with reference i."""
    pairs = list(zip(generated, reference, strict=True))
    return sum(bag_cosine(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0
