"""Packed safetensors files: exact reload of a quantized model, dtypes, ties, int8 embeddings, damage."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.errors import ArtifactCorruptError
from agent_forge.quant.bitlinear import BitLinearConfig, freeze_ternary, replace_linears, ternary_state
from agent_forge.quant.packed_io import (
    PackedSaveConfig,
    load_packed,
    load_packed_into,
    packed_size_breakdown,
    read_packed_config,
    save_packed,
)

LLAMA = LlamaConfig(
    vocab_size=320,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=64,
    tie_word_embeddings=True,
)


def _llama(seed: int, granularity: str = "tensor") -> LlamaForCausalLM:
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LLAMA).eval()
    replace_linears(model, keep={"lm_head"}, config=BitLinearConfig(granularity=granularity))
    return model


def _logits(model: nn.Module) -> torch.Tensor:
    ids = torch.randint(0, LLAMA.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("fmt", ["tq2_0", "tq1_0"])
@pytest.mark.parametrize("granularity", ["tensor", "channel"])
def test_packed_model_gives_the_same_logits(tmp_path: Path, fmt: str, granularity: str) -> None:
    model = _llama(0, granularity)
    expected = _logits(model)
    path = tmp_path / "model.safetensors"
    save_packed(model, path, PackedSaveConfig(ternary_format=fmt, float_dtype="float32"))

    restored = _llama(1, granularity)
    assert not torch.equal(_logits(restored), expected)
    names = load_packed_into(restored, path)
    assert len(names) == 14
    assert torch.equal(_logits(restored), expected)
    for name, state in ternary_state(model).items():
        assert torch.equal(ternary_state(restored)[name].values, state.values)
        assert torch.equal(ternary_state(restored)[name].scale, state.scale)
    assert restored.lm_head.weight is restored.model.embed_tokens.weight


def test_frozen_model_round_trips_and_sizes_add_up(tmp_path: Path) -> None:
    model = _llama(2)
    freeze_ternary(model)
    path = tmp_path / "frozen.safetensors"
    size = save_packed(model, path, PackedSaveConfig(float_dtype="float32"))
    sizes = packed_size_breakdown(path)
    assert sum(sizes.values()) == size == path.stat().st_size
    n_ternary = sum(s.values.numel() for s in ternary_state(model).values())
    assert sizes["ternary"] < n_ternary * 2.2 / 8 + 14 * 4 + 14 * 66
    embedding_bytes = LLAMA.vocab_size * LLAMA.hidden_size * 4
    assert embedding_bytes <= sizes["other"] < embedding_bytes * 1.1  # tied head stored once
    restored = _llama(3)
    load_packed_into(restored, path)
    assert torch.equal(_logits(restored), _logits(model))


def test_float16_storage_halves_the_rest_and_restores_dtypes(tmp_path: Path) -> None:
    model = _llama(4)
    full, half = tmp_path / "f32.safetensors", tmp_path / "f16.safetensors"
    save_packed(model, full, PackedSaveConfig(float_dtype="float32"))
    save_packed(model, half, PackedSaveConfig(float_dtype="float16"))
    assert packed_size_breakdown(half)["other"] * 2 == packed_size_breakdown(full)["other"]
    checkpoint = load_packed(half)
    assert checkpoint.tensors["model.norm.weight"].dtype == torch.float32
    restored = _llama(5)
    load_packed_into(restored, half)
    assert torch.allclose(_logits(restored), _logits(model), atol=2e-2)


def test_int8_embeddings_stay_within_half_a_step(tmp_path: Path) -> None:
    model = _llama(6)
    path = tmp_path / "int8.safetensors"
    save_packed(model, path, PackedSaveConfig(float_dtype="float32", int8_embeddings=True))
    sizes = packed_size_breakdown(path)
    assert sizes["int8"] == LLAMA.vocab_size * (LLAMA.hidden_size + 4)
    embedding = model.model.embed_tokens.weight.detach()
    restored = load_packed(path).tensors["model.embed_tokens.weight"]
    step = embedding.abs().amax(dim=1, keepdim=True) / 127
    assert torch.all((restored - embedding).abs() <= step / 2 + 1e-7)


@pytest.mark.parametrize("columns", [64, 40])
def test_int4_embeddings_stay_within_half_a_step_of_their_block_scale(tmp_path: Path, columns: int) -> None:
    torch.manual_seed(11)
    model = nn.Sequential(nn.Embedding(50, columns), nn.Linear(columns, 8))
    with torch.no_grad():
        model[0].weight[3, :32] = 0.0  # an all-zero block
    replace_linears(model)
    path = tmp_path / "int4.safetensors"
    save_packed(model, path, PackedSaveConfig(float_dtype="float32", int4_embeddings=True))
    blocks = -(-columns // 32)
    assert packed_size_breakdown(path)["int4"] == 50 * (blocks * 32 // 2 + blocks * 2)
    embedding = model[0].weight.detach()
    restored = load_packed(path).tensors["0.weight"]
    assert restored.shape == embedding.shape
    padded = torch.nn.functional.pad(embedding, (0, blocks * 32 - columns)).view(50, blocks, 32)
    step = (padded.abs().amax(dim=2) / 7).clamp(min=1e-6).half().float()
    error = torch.nn.functional.pad(restored - embedding, (0, blocks * 32 - columns)).view(50, blocks, 32)
    assert torch.all(error.abs() <= step.unsqueeze(2) / 2 + 1e-6)
    assert torch.all(restored[3, :32] == 0)
    assert len(torch.unique(restored[7, :32])) <= 16


def test_int4_storage_is_a_fixed_point(tmp_path: Path) -> None:
    """Storing what was loaded back stores the same codes (Phase 5 re-packs Phase 4's model)."""
    torch.manual_seed(12)
    model = nn.Sequential(nn.Embedding(30, 64), nn.Linear(64, 8))
    replace_linears(model)
    config = PackedSaveConfig(float_dtype="float32", int4_embeddings=True)
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_packed(model, first, config)
    model.load_state_dict(load_packed(first).tensors, strict=False)
    save_packed(model, second, config)
    assert torch.equal(load_packed(second).tensors["0.weight"], load_packed(first).tensors["0.weight"])


def test_int8_and_int4_embeddings_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        PackedSaveConfig(int8_embeddings=True, int4_embeddings=True)


def test_biases_and_plain_linears_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(7)
    model = nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 24), nn.Linear(24, 5))
    replace_linears(model, keep={"3"}, config=BitLinearConfig(granularity="channel"))
    path = tmp_path / "mlp.safetensors"
    save_packed(model, path, PackedSaveConfig(float_dtype="float32"))
    restored = nn.Sequential(nn.Linear(40, 300), nn.ReLU(), nn.Linear(300, 24), nn.Linear(24, 5))
    replace_linears(restored, keep={"3"}, config=BitLinearConfig(granularity="channel"))
    load_packed_into(restored, path)
    x = torch.randn(9, 40)
    assert torch.equal(restored(x), model(x))


def test_damaged_or_foreign_files_are_refused(tmp_path: Path) -> None:
    model = _llama(8)
    path = tmp_path / "model.safetensors"
    save_packed(model, path)
    key = "model.layers.0.mlp.up_proj.weight.tq2_0"
    with safe_open(str(path), framework="pt") as handle:
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
    tensors[key][0, -1] ^= 0x40  # flip a bit of the first block's fp16 scale

    from safetensors.torch import save_file

    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ArtifactCorruptError, match="block scales"):
        load_packed(path)
    save_file({"x": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ArtifactCorruptError, match="not a packed"):
        load_packed(path)
    path.write_bytes(b"not a safetensors file")
    with pytest.raises(ArtifactCorruptError):
        load_packed(path)


def test_loading_needs_bitlinear_layers(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_packed(_llama(9), path)
    torch.manual_seed(0)
    with pytest.raises(ValueError, match="replace_linears"):
        load_packed_into(LlamaForCausalLM(LLAMA), path)


def test_the_header_names_the_format_a_file_was_written_in(tmp_path: Path) -> None:
    """Phases 5-6 pack their output the way their input was packed, read from this header."""
    config = PackedSaveConfig(ternary_format="tq1_0", int8_embeddings=True)
    save_packed(_llama(0), tmp_path / "m.safetensors", config)
    assert read_packed_config(tmp_path / "m.safetensors") == config
    (tmp_path / "plain.safetensors").write_bytes(b"not a packed file")
    with pytest.raises(ArtifactCorruptError):
        read_packed_config(tmp_path / "plain.safetensors")
