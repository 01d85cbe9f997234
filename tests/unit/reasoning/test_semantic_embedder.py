"""all-MiniLM-L6-v2 through transformers: unit vectors, meaningful similarities, the cache changes nothing."""

from __future__ import annotations

import pytest
import torch

from agent_forge.reasoning.semantic import SentenceEmbedder


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


def test_embeddings_are_unit_vectors(embedder):
    vectors = embedder.encode(["Sam has 12 apples.", "def f(x): return x + 1"])
    assert vectors.shape == (2, 384)
    torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(2))


def test_related_text_is_closer_than_unrelated_text(embedder):
    question = "Sam has 12 apples and buys 5 more apples. How many apples does Sam have?"
    related, unrelated = "12 apples plus 5 apples make 17 apples", "def reverse(text): return text[::-1]"
    close, far = embedder.similarity([related, unrelated], [question, question])
    assert close > far + 0.2


def test_cached_vectors_equal_fresh_ones(embedder):
    texts = ["Which number is the largest?", "A cabbage is a vegetable."]
    torch.testing.assert_close(embedder.cached(texts), embedder.encode(texts))
    torch.testing.assert_close(embedder.cached(texts[::-1]), embedder.encode(texts[::-1]))
