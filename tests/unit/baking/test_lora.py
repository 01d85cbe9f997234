"""Low-rank adapters: the merged layer computes what the adapter computed, BitLinear layers stay ternary."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from agent_forge.baking import LoRAConfig, LoRALinear, apply_lora, lora_targets, merge_lora, refreeze, release_ternary
from agent_forge.model import ForgeForCausalLM
from agent_forge.quant.bitlinear import BitLinear, freeze_ternary, replace_linears, ternary_state
from support.shapes import unit_config


def randomize_adapters(model: nn.Module, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoRALinear):
                module.lora_b.copy_(torch.randn(module.lora_b.shape, generator=generator) * 0.05)


def test_a_merged_linear_equals_the_adapter_forward() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 12), nn.ReLU(), nn.Linear(12, 8))
    handle = apply_lora(model, LoRAConfig(rank=4, alpha=8), torch.Generator().manual_seed(1))
    randomize_adapters(model, 2)
    x = torch.randn(5, 16)
    with torch.no_grad():
        adapted = model(x)
    merge_lora(model, handle)
    assert all(type(m) is nn.Linear for m in (model[0], model[2]))
    torch.testing.assert_close(model(x), adapted, atol=1e-6, rtol=1e-5)


def test_a_merged_bitlinear_equals_the_adapter_forward_exactly_and_stays_ternary() -> None:
    torch.manual_seed(3)
    layer = BitLinear(32, 24, bias=True)
    model = nn.Sequential(layer)
    before = ternary_state(model)["0"].values.clone()
    handle = apply_lora(model, LoRAConfig(rank=4), torch.Generator().manual_seed(4))
    randomize_adapters(model, 5)
    x = torch.randn(6, 32)
    with torch.no_grad():
        adapted = model(x)
    merge_lora(model, handle)
    assert model[0] is layer
    assert torch.equal(model(x), adapted)  # same shadow weight, same re-quantization: bit-identical
    after = ternary_state(model)["0"].values
    assert set(after.unique().tolist()) <= {-1, 0, 1} and after.dtype == torch.int8
    assert not torch.equal(after, before)  # the bake moved some ternary weights


def test_only_adapters_train_and_gradients_reach_them_through_the_ternary_quantizer() -> None:
    torch.manual_seed(6)
    model = nn.Sequential(BitLinear(16, 16), nn.Linear(16, 4))
    handle = apply_lora(model, LoRAConfig(rank=2), torch.Generator().manual_seed(7))
    randomize_adapters(model, 8)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"0.lora_a", "0.lora_b", "1.lora_a", "1.lora_b"}
    model(torch.randn(3, 16)).pow(2).sum().backward()
    for name, param in model.named_parameters():
        assert (param.grad is not None and float(param.grad.abs().sum()) > 0) == (name in trainable)
    merge_lora(model, handle)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="no adapter"):
        merge_lora(model, handle)


def test_frozen_ternary_layers_are_released_for_the_bake_and_frozen_again() -> None:
    torch.manual_seed(9)
    model = nn.Sequential(BitLinear(8, 8), BitLinear(8, 8))
    freeze_ternary(model)
    with pytest.raises(ValueError, match="unfreeze"):
        apply_lora(model, LoRAConfig(rank=2))
    names = release_ternary(model)
    assert names == ["0", "1"] and not model[0].frozen
    with torch.no_grad():
        model[0].weight.mul_(-1.0)
    refreeze(model, names)
    assert model[0].frozen and torch.equal(model[0].ternary, ternary_state(model)["0"].values)


def test_adapters_on_a_whole_ternary_model_merge_to_the_same_logits() -> None:
    torch.manual_seed(10)
    model = ForgeForCausalLM(unit_config()).eval()
    replace_linears(model, keep={"lm_head"})
    targets = lora_targets(model, 4)
    assert targets and not any("lm_head" in t or "act_head" in t for t in targets)
    handle = apply_lora(model, LoRAConfig(rank=4), torch.Generator().manual_seed(11))
    randomize_adapters(model, 12)
    ids = torch.randint(30, 500, (2, 20), generator=torch.Generator().manual_seed(13))
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        merge_lora(model, handle)
        merged = model(input_ids=ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-4, rtol=1e-4)
