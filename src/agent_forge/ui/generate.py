"""Generate text from a registered model: the dashboard's text box and the notebook use this."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from agent_forge.errors import ArtifactCorruptError
from agent_forge.ui.data import ForgeData


@dataclass
class LoadedModel:
    """A model rebuilt from its verified artifact, with the session tokenizer stored beside it."""

    model_id: str
    model: Any
    tokenizer: Any


def load_for_generation(data: ForgeData, model_id: str) -> LoadedModel:
    """Verify the artifact's checksums, then rebuild the model the way the next phase would."""
    from agent_forge.model_io import load_model, load_tokenizer

    ref = data.model_ref(model_id)
    missing = [name for name in ("config.json", "model.safetensors", "tokenizer.json")
               if not (ref.path / name).is_file()]
    if missing:
        raise ArtifactCorruptError(f"model {model_id} has no {', '.join(missing)}, so it cannot generate",
                                   "pick a model stored in Hugging Face format (a Phase 1-6 output)")
    return LoadedModel(model_id, load_model(ref), load_tokenizer(ref))


@torch.no_grad()
def generate_text(loaded: LoadedModel, prompt: str, max_new_tokens: int = 48, temperature: float = 0.0,
                  seed: int = 0) -> str:
    """Continue ``prompt``: greedy at temperature 0, else sampled with a fixed seed (reproducible)."""
    tokenizer, model = loaded.tokenizer, loaded.model
    ids = torch.tensor([tokenizer.encode(prompt, bos=True)], dtype=torch.long,
                       device=next(model.parameters()).device)
    options: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "eos_token_id": tokenizer.eos_id,
                               "pad_token_id": tokenizer.pad_id, "attention_mask": torch.ones_like(ids)}
    if temperature > 0:
        options.update(do_sample=True, temperature=float(temperature), top_k=0)
    else:
        options.update(do_sample=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # generate() samples from the global generator; fork_rng restores it after
        out = model.generate(input_ids=ids, **options)
    return tokenizer.decode(out[0, ids.shape[1]:].tolist())
