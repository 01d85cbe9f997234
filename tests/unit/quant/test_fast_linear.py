"""PackedTernaryLinear: kernel layout, every kernel build and the torch fallback against the reference."""

from __future__ import annotations

import copy
import platform
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from agent_forge.quant._kernels.build import KernelBuildError, build_kernel, find_compiler, load_kernel
from agent_forge.quant.bitlinear import BitLinear, dequantized_activations, freeze_ternary, replace_linears
from agent_forge.quant.fast_linear import (
    PackedTernaryLinear,
    native_kernel,
    pack_kernel_codes,
    resolve_backend,
    to_packed_inference,
    unpack_kernel_codes,
)

SPEC_SHAPES = [(384, 384), (384, 1024), (1024, 384), (512, 2048), (2048, 512)]
ODD_SHAPES = [(1, 1), (63, 5), (65, 130), (320, 70), (448, 33)]
needs_compiler = pytest.mark.skipif(find_compiler() is None, reason="no C compiler on this machine")
needs_x86 = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 kernel variants")


def _frozen_bitlinear(in_features: int, out_features: int, seed: int = 0, bias: bool = True) -> BitLinear:
    torch.manual_seed(seed)
    layer = BitLinear(in_features, out_features, bias=bias)
    if bias:
        with torch.no_grad():
            layer.bias.normal_()
    layer.freeze()
    return layer


def _inputs(*shape: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


@settings(max_examples=30, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 700), seed=st.integers(0, 2**31))
def test_kernel_codes_round_trip(rows: int, cols: int, seed: int) -> None:
    values = np.random.default_rng(seed).integers(-1, 2, size=(rows, cols)).astype(np.int8)
    codes = pack_kernel_codes(values)
    assert codes.shape == (rows, -(-cols // 64) * 16) and codes.dtype == np.uint8
    assert np.array_equal(unpack_kernel_codes(codes, cols), values)
    with pytest.raises(ValueError, match="ternary"):
        pack_kernel_codes(np.full((rows, cols), 2, dtype=np.int8))


def _check_against_reference(layer: BitLinear, packed: PackedTernaryLinear, x: torch.Tensor) -> None:
    """Same int8 activations as BitLinear, so only float rounding separates the two; and within the
    activation-quantization bound of the unquantized-activation product."""
    with torch.no_grad():
        expected = layer(x)
        got = packed(x)
        weight = layer.ternary_weight().dequantize()
        unquantized = nn.functional.linear(x, weight, layer.bias)
    assert got.shape == expected.shape and got.dtype == x.dtype
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    step = x.abs().amax(dim=-1, keepdim=True) / 127
    bound = step / 2 * weight.abs().sum(dim=1) + 1e-4
    assert torch.all((got - unquantized).abs() <= bound)


@needs_compiler
@pytest.mark.parametrize(("in_features", "out_features"), SPEC_SHAPES + ODD_SHAPES)
def test_native_kernel_matches_bitlinear(in_features: int, out_features: int) -> None:
    layer = _frozen_bitlinear(in_features, out_features)
    packed = PackedTernaryLinear.from_bitlinear(layer, backend="c")
    for shape in [(1, in_features), (5, in_features), (2, 3, in_features)]:
        _check_against_reference(layer, packed, _inputs(*shape))


@needs_compiler
@needs_x86
@pytest.mark.parametrize(
    ("flags", "name"), [(("-march=haswell",), "c-avx2"), (("-march=x86-64",), "c-portable")]
)
def test_every_kernel_build_gives_the_same_answer(
    flags: tuple[str, ...], name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_FORGE_KERNEL_CACHE", str(tmp_path))
    kernel = load_kernel(flags)
    assert kernel.name == name and kernel.path.parent == tmp_path
    assert build_kernel(flags) == kernel.path  # second call comes from the cache
    for in_features, out_features in [(384, 1024), (2048, 6), *ODD_SHAPES]:
        layer = _frozen_bitlinear(in_features, out_features, seed=in_features)
        packed = PackedTernaryLinear.from_bitlinear(layer)
        packed.use_kernel(kernel)
        _check_against_reference(layer, packed, _inputs(3, in_features))


@pytest.mark.parametrize(("in_features", "out_features"), [(384, 384), (100, 70)])
def test_torch_int8_fallback_matches_bitlinear(in_features: int, out_features: int) -> None:
    layer = _frozen_bitlinear(in_features, out_features, bias=False)
    packed = PackedTernaryLinear.from_bitlinear(layer, backend="torch-int8")
    assert packed.backend == "torch-int8"
    _check_against_reference(layer, packed, _inputs(4, in_features))


def test_missing_compiler_falls_back_with_a_clear_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with pytest.raises(KernelBuildError, match="does not run"):
        build_kernel()
    native_kernel.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="Install gcc or clang"):
            assert resolve_backend("auto") == "torch-int8"
        with pytest.raises(KernelBuildError):
            resolve_backend("c")
    finally:
        native_kernel.cache_clear()


def test_inputs_are_checked_and_dtypes_kept() -> None:
    packed = PackedTernaryLinear.from_bitlinear(_frozen_bitlinear(64, 8))
    with pytest.raises(ValueError, match="last dimension"):
        packed(torch.zeros(1, 63))
    with pytest.raises(RuntimeError, match="inference-only"):
        packed(torch.zeros(1, 64, requires_grad=True))
    x = _inputs(2, 64).to(torch.bfloat16)
    assert packed(x).dtype == torch.bfloat16
    assert packed(_inputs(2, 128)[:, ::2]).shape == (2, 8)  # non-contiguous input


@needs_compiler
def test_copies_and_moved_buffers_rebind_the_kernel() -> None:
    layer = _frozen_bitlinear(96, 10)
    packed = PackedTernaryLinear.from_bitlinear(layer)
    x = _inputs(2, 96)
    expected = packed(x)
    copied = copy.deepcopy(packed)
    assert copied.backend == "c" and torch.equal(copied(x), expected)
    packed.double().float()  # replaces every buffer object
    assert torch.equal(packed(x), expected)
    with torch.no_grad():
        packed.weight_scale.mul_(2.0)  # in place: same buffer, new values
    assert torch.allclose(packed(x), 2 * (expected - packed.bias) + packed.bias, atol=1e-5)


def test_state_dict_round_trip_and_decoded_weights() -> None:
    layer = _frozen_bitlinear(130, 12)
    packed = PackedTernaryLinear.from_bitlinear(layer)
    assert torch.equal(packed.ternary_weight().values, layer.ternary.to(torch.int8))
    fresh = PackedTernaryLinear(130, 12, bias=True)
    fresh.load_state_dict(packed.state_dict())
    x = _inputs(2, 130)
    assert torch.equal(fresh(x), packed(x))


def test_packed_llama_matches_the_bitlinear_llama() -> None:
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=128,
        intermediate_size=320,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).eval()
    replace_linears(model, keep={"lm_head"})
    freeze_ternary(model)
    ids = torch.randint(0, 256, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(ids).logits
        names = to_packed_inference(model)
        got = model(ids).logits
    assert len(names) == 14 and isinstance(model.model.layers[0].mlp.down_proj, PackedTernaryLinear)
    assert torch.allclose(got, expected, atol=1e-4)
    assert (got.argmax(-1) == expected.argmax(-1)).all()


def test_packed_module_is_real_integer_arithmetic_not_float_weights() -> None:
    packed = PackedTernaryLinear.from_bitlinear(_frozen_bitlinear(512, 2048))
    tensors = dict(packed.named_buffers())
    assert tensors["codes"].dtype == torch.uint8 and tensors["codes"].numel() == 2048 * 512 // 4
    assert not any(t.is_floating_point() and t.numel() > 2048 for t in tensors.values())
    assert not any(isinstance(m, nn.Linear) for m in packed.modules())
    # Activations that differ below one int8 step give identical outputs: the inputs are quantized.
    x = _inputs(1, 512)
    toward_grid = torch.sign(dequantized_activations(x) - x)
    toward_grid[0, x.abs().argmax()] = 0  # keep max|x|, hence the activation scale
    nudged = x + (x.abs().max() / 127) * 1e-3 * toward_grid
    assert not torch.equal(x, nudged)
    assert torch.equal(packed(x), packed(nudged))


@pytest.mark.slow
@needs_compiler
@pytest.mark.parametrize(("in_features", "out_features"), SPEC_SHAPES)
def test_packed_layer_is_faster_than_fp32_at_batch_one(in_features: int, out_features: int) -> None:
    torch.set_num_threads(1)
    linear = nn.Linear(in_features, out_features, bias=False)
    packed = PackedTernaryLinear.from_bitlinear(_frozen_bitlinear(in_features, out_features, bias=False))
    x = _inputs(1, in_features)

    def best_of(module: nn.Module) -> float:
        times = []
        for _ in range(15):
            start = time.perf_counter()
            for _ in range(300):
                module(x)
            times.append(time.perf_counter() - start)
        return min(times)

    with torch.inference_mode():
        ratio = best_of(linear) / best_of(packed)
    assert ratio > 1.5, f"packed ternary only {ratio:.2f}x fp32 at {in_features}x{out_features}"
