"""A BitLinear model to container tensors and back: exact at fp32, ties once, runnable after decoding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from agent_forge.model import ForgeForCausalLM
from agent_forge.quant.bitlinear import BitLinearConfig, bitlinear_modules, replace_linears
from agent_forge.quant.container import decode_model, read_metadata, write_model
from agent_forge.quant.model_codec import ModelCodecConfig, ModelLayout, load_tensors_into, model_tensors
from agent_forge.quant.planner import PlannerConfig, plan_compression
from agent_forge.quant.vptq import VPTQConfig
from support.shapes import unit_config


def bitnet_model(granularity: str = "tensor") -> ForgeForCausalLM:
    torch.manual_seed(0)
    model = ForgeForCausalLM(unit_config())
    replace_linears(model, config=BitLinearConfig(granularity=granularity))
    return model.eval()


def logits(model: ForgeForCausalLM) -> torch.Tensor:
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize(("fmt", "granularity"), [("tq1_0", "tensor"), ("tq2_0", "channel")])
def test_fp32_round_trip_into_a_plain_skeleton_is_exact(fmt: str, granularity: str) -> None:
    model = bitnet_model(granularity)
    tensors, layout = model_tensors(model, ModelCodecConfig(ternary_format=fmt, float_dtype="float32"))
    assert set(layout.ternary) == set(bitlinear_modules(model))
    assert all(f"{name}.weight" not in tensors for name in layout.ternary)  # no shadow weights
    assert tensors[f"{next(iter(layout.ternary))}.weight.{fmt}"].dtype == torch.uint8
    skeleton = ForgeForCausalLM(unit_config())
    rebuilt = load_tensors_into(skeleton, tensors, ModelLayout.from_json(layout.to_json())).eval()
    assert all(layer.frozen for layer in bitlinear_modules(rebuilt).values())
    assert bitlinear_modules(rebuilt)[next(iter(layout.ternary))].config.granularity == granularity
    assert torch.equal(logits(rebuilt), logits(model))


def test_tied_embedding_is_stored_once_and_floats_are_cast() -> None:
    tensors, layout = model_tensors(bitnet_model())
    assert layout.aliases == {"lm_head.weight": "model.embed_tokens.weight"}
    assert "lm_head.weight" not in tensors
    assert tensors["model.embed_tokens.weight"].dtype == torch.float16
    assert layout.dtypes["model.embed_tokens.weight"] == "float32"
    rebuilt = load_tensors_into(ForgeForCausalLM(unit_config()), tensors, layout).eval()
    assert rebuilt.lm_head.weight.data_ptr() == rebuilt.model.embed_tokens.weight.data_ptr()
    assert torch.allclose(logits(rebuilt), logits(bitnet_model()), atol=1e-2)


def test_compressed_file_rebuilds_the_in_memory_model_bit_exactly(tmp_path: Path) -> None:
    model = bitnet_model()
    tensors, layout = model_tensors(model)
    result = plan_compression(
        tensors,
        lambda t: 1.0,  # every candidate is within budget: this test is about the decoder, not the choice
        {"matrix": [VPTQConfig(codebook=16)]},
        PlannerConfig(evaluator_kind="metric", zstd_level=3),
        metadata={"layout": layout.to_json()},
    )
    assert any(d.chosen.startswith("vptq") for d in result.decisions)
    path = write_model(tmp_path / "model.afqz", result.compressed.data)
    from_file = load_tensors_into(
        ForgeForCausalLM(unit_config()),
        decode_model(path),
        ModelLayout.from_json(read_metadata(path.read_bytes())["layout"]),
    ).eval()
    in_memory = load_tensors_into(
        ForgeForCausalLM(unit_config()), result.compressed.reconstruction, layout
    ).eval()
    state_a, state_b = from_file.state_dict(), in_memory.state_dict()
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert torch.equal(logits(from_file), logits(in_memory))
    assert not torch.equal(logits(from_file), logits(model))  # the embedding really went through VPTQ


def test_tensors_that_do_not_fit_are_refused() -> None:
    tensors, layout = model_tensors(bitnet_model())
    tensors.pop("model.norm.weight")
    layout.dtypes.pop("model.norm.weight")
    with pytest.raises(ValueError, match="missing"):
        load_tensors_into(ForgeForCausalLM(unit_config()), tensors, layout)
