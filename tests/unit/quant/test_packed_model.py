"""The model and its packed file as one model: storage precision absorbed, logit gap measured, same bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.quant.bitlinear import replace_linears
from agent_forge.quant.packed_io import PackedSaveConfig, save_packed
from agent_forge.quant.packed_model import absorb_storage_precision, packed_logits_gap

LLAMA = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
                    tie_word_embeddings=True)
IDS = torch.randint(0, 256, (2, 10), generator=torch.Generator().manual_seed(0))


def _model(seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LLAMA).eval()
    with torch.no_grad():  # norms away from 1.0, so fp16 storage rounds them
        for name, param in model.named_parameters():
            if "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn_like(param))
    replace_linears(model, keep={"lm_head"})
    return model


@pytest.mark.parametrize("int8_embeddings", [False, True])
def test_absorbed_storage_precision_reproduces_the_model(tmp_path: Path, int8_embeddings: bool) -> None:
    model, path = _model(), tmp_path / "m.safetensors"
    config = PackedSaveConfig(ternary_format="tq1_0", float_dtype="float16", int8_embeddings=int8_embeddings)
    save_packed(model, path, config)
    assert packed_logits_gap(model, path, IDS) > 0.0  # fp16/int8 storage changes a full-precision model
    size = absorb_storage_precision(model, path, config)
    assert size == path.stat().st_size
    assert packed_logits_gap(model, path, IDS) == 0.0
    embedding = model.get_input_embeddings().weight
    assert torch.equal(embedding, embedding.half().float()) or int8_embeddings


def test_absorb_leaves_the_ternary_shadow_weights_alone(tmp_path: Path) -> None:
    model = _model()
    layer = model.model.layers[0].mlp.up_proj
    before = layer.weight.detach().clone()
    absorb_storage_precision(model, tmp_path / "m.safetensors")
    assert torch.equal(layer.weight, before)


def test_logits_gap_sees_a_file_of_another_model(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    absorb_storage_precision(_model(0), path)
    assert packed_logits_gap(_model(1), path, IDS) > 0.0


def test_saving_the_same_model_twice_gives_the_same_bytes(tmp_path: Path) -> None:
    model = _model()
    blobs = set()
    for i in range(4):
        save_packed(model, tmp_path / f"m{i}.safetensors")
        blobs.add((tmp_path / f"m{i}.safetensors").read_bytes())
    assert len(blobs) == 1
