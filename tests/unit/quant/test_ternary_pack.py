"""TQ2_0 / TQ1_0 packing: byte for byte against the gguf package, exact round trips, sizes, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType
from gguf.quants import dequantize, quantize
from hypothesis import given, settings
from hypothesis import strategies as st

from agent_forge.quant.ternary_pack import (
    QK,
    TQ1_0_BLOCK_BYTES,
    TQ2_0_BLOCK_BYTES,
    block_count,
    from_blocks,
    pack_ternary,
    pack_tq1_0,
    pack_tq2_0,
    to_blocks,
    tq1_0_codes,
    tq1_0_from_codes,
    unpack_ternary,
    unpack_tq1_0,
    unpack_tq2_0,
)

FORMATS = {
    "tq2_0": (pack_tq2_0, unpack_tq2_0, GGMLQuantizationType.TQ2_0, TQ2_0_BLOCK_BYTES),
    "tq1_0": (pack_tq1_0, unpack_tq1_0, GGMLQuantizationType.TQ1_0, TQ1_0_BLOCK_BYTES),
}


def _ternary(shape: tuple[int, ...], seed: int, zero_share: float = 0.33) -> np.ndarray:
    rng = np.random.default_rng(seed)
    signs = rng.choice(np.array([-1, 1], dtype=np.int8), size=shape)
    return np.where(rng.random(shape) < zero_share, 0, signs).astype(np.int8)


def _fp16_exact(value: float) -> np.float32:
    return np.float32(np.float16(value))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize(
    ("shape", "row_aligned"),
    [
        ((384, 384), False),
        ((1024, 384), False),
        ((512, 2048), True),
        ((7, 5), False),
        ((3, 300), True),
        ((600,), False),
    ],
)
def test_blocks_match_gguf_byte_for_byte(fmt: str, shape: tuple[int, ...], row_aligned: bool) -> None:
    pack, _, qtype, block_bytes = FORMATS[fmt]
    values = _ternary(shape, seed=sum(shape))
    scale = _fp16_exact(0.0213)
    ours = pack(values, scale, row_aligned)
    theirs = quantize(to_blocks(values, row_aligned).astype(np.float32) * scale, qtype)
    assert ours.dtype == np.uint8 and ours.shape == (block_count(shape, row_aligned), block_bytes)
    assert np.array_equal(ours, theirs)
    assert np.array_equal(dequantize(ours, qtype), to_blocks(values, row_aligned) * scale)


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_per_row_scales_match_gguf_when_rows_are_block_aligned(fmt: str) -> None:
    _, _, qtype, _ = FORMATS[fmt]
    values = _ternary((6, 320), seed=11)
    values[2] = 0  # an all-zero row: GGUF writes d = 0 for its blocks
    scales = np.array([_fp16_exact(s) for s in (0.5, 0.01, 0.2, 3.0, 0.07, 1e-3)], dtype=np.float32)
    packed = pack_ternary(values, scales, fmt, row_aligned=True)
    deq = to_blocks(values, row_aligned=True).reshape(6, -1) * scales[:, None]
    assert np.array_equal(packed.data, quantize(deq.reshape(-1, QK), qtype))
    restored, block_scales = unpack_ternary(packed)
    assert np.array_equal(restored, values)
    assert np.array_equal(block_scales, np.where(np.arange(12) // 2 == 2, 0, np.repeat(scales, 2)))


@settings(max_examples=40, deadline=None)
@given(
    shape=st.lists(st.integers(1, 300), min_size=1, max_size=3).map(tuple),
    seed=st.integers(0, 2**32 - 1),
    zero_share=st.floats(0.0, 1.0),
    scale=st.floats(1e-4, 100.0),
    row_aligned=st.booleans(),
    fmt=st.sampled_from(sorted(FORMATS)),
)
def test_round_trip_is_exact_for_any_shape(
    shape: tuple[int, ...], seed: int, zero_share: float, scale: float, row_aligned: bool, fmt: str
) -> None:
    pack, unpack, _, block_bytes = FORMATS[fmt]
    values = _ternary(shape, seed, zero_share)
    packed = pack(values, scale, row_aligned)
    assert packed.nbytes == block_count(shape, row_aligned) * block_bytes
    restored, block_scales = unpack(packed, shape, row_aligned)
    assert restored.dtype == np.int8 and np.array_equal(restored, values)
    nonzero_blocks = np.any(to_blocks(values, row_aligned) != 0, axis=1)
    assert np.array_equal(block_scales, np.where(nonzero_blocks, _fp16_exact(scale), 0))


def test_bits_per_weight_are_ggufs() -> None:
    values = _ternary((4096, 256), seed=3)
    assert pack_tq2_0(values, 1.0).nbytes * 8 / values.size == pytest.approx(2.0625)
    assert pack_tq1_0(values, 1.0).nbytes * 8 / values.size == pytest.approx(1.6875)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="-1, 0"):
        pack_tq2_0(np.array([0, 2, -1], dtype=np.int8), 1.0)
    with pytest.raises(TypeError):
        pack_tq1_0(np.array([0.0, 1.0]), 1.0)
    with pytest.raises(ValueError, match="blocks"):
        unpack_tq2_0(np.zeros(65, dtype=np.uint8), (256,))
    with pytest.raises(ValueError, match="row_aligned"):
        pack_ternary(_ternary((4, 8), 0), np.ones(4, dtype=np.float32), "tq2_0", row_aligned=False)
    with pytest.raises(ValueError, match="format"):
        pack_ternary(_ternary((4, 8), 0), 1.0, "tq3_0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        pack_tq2_0(_ternary((256,), 0), -1.0)


def test_tq1_0_blocks_split_into_trits_and_scale_bytes_and_back() -> None:
    values = _ternary((5, 300), seed=4)
    packed = pack_tq1_0(values, 0.25, row_aligned=True)
    codes, scale_bytes = tq1_0_codes(packed)
    assert codes.shape == (packed.shape[0], QK) and codes.max() <= 2
    assert np.array_equal(from_blocks(codes.astype(np.int8) - 1, values.shape, row_aligned=True), values)
    assert np.array_equal(scale_bytes.view(np.float16).reshape(-1), np.full(packed.shape[0], np.float16(0.25)))
    assert np.array_equal(tq1_0_from_codes(codes, scale_bytes), packed)
