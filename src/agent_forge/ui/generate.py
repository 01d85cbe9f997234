"""Generate text from a registered model: the dashboard's text box and the notebook use this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agent_forge.engine import decode
from agent_forge.errors import ArtifactCorruptError
from agent_forge.ui.data import DashboardData


@dataclass
class LoadedModel:
    """A model rebuilt from its verified artifact, with the session tokenizer stored beside it."""

    model_id: str
    model: Any
    tokenizer: Any


def load_for_generation(data: DashboardData, model_id: str) -> LoadedModel:
    """Verify the artifact's checksums, then rebuild the model the way the next phase would."""
    from agent_forge.model_io import load_model, load_tokenizer

    ref = data.model_ref(model_id)
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json")
               if not (ref.path / name).is_file()]
    if missing:
        raise ArtifactCorruptError(f"model {model_id} has no {', '.join(missing)}, so it cannot generate",
                                   "pick a model stored in Hugging Face format (a Phase 1-6 output)")
    return LoadedModel(model_id, load_model(ref), load_tokenizer(ref))


def generate_text(loaded: LoadedModel, prompt: str, max_new_tokens: int = 48, temperature: float = 0.0,
                  seed: int = 0) -> str:
    """Continue ``prompt`` through the decoding engine: greedy at temperature 0, else sampled with a
    generator seeded by ``seed`` (reproducible, and the global random state is left alone)."""
    tokenizer, model = loaded.tokenizer, loaded.model
    generator = torch.Generator().manual_seed(seed)
    decoded = decode(model, [tokenizer.encode(prompt, bos=True)], int(max_new_tokens),
                     temperature=float(temperature), generator=generator, eos_id=tokenizer.eos_id)[0]
    return tokenizer.decode(decoded.tokens)
