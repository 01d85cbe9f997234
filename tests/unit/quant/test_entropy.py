"""Entropy stage: bit packing, rANS, zstd and xz are lossless; the coder reaches the empirical entropy."""

from __future__ import annotations

import lzma
import struct

import numpy as np
import pytest

from agent_forge.quant.baselines import xz_9e_size
from agent_forge.quant.entropy import (
    RANS_SCALE_BITS,
    blob_header,
    decode_bytes,
    decode_symbols,
    encode_bytes,
    encode_symbols,
    normalized_frequencies,
    pack_uint,
    rans_decode,
    rans_encode,
    read_blob_header,
    unpack_uint,
    xz_encode,
    xz_filters,
)


def empirical_entropy_bytes(symbols: np.ndarray) -> float:
    counts = np.bincount(symbols)
    p = counts[counts > 0] / symbols.size
    return float(-(p * np.log2(p)).sum() * symbols.size / 8)


@pytest.mark.parametrize("width", [1, 2, 3, 5, 7, 8, 11, 12, 16, 20, 32])
def test_bit_packing_round_trips(width: int) -> None:
    rng = np.random.default_rng(width)
    values = rng.integers(0, 1 << width, size=1001, dtype=np.uint64)
    packed = pack_uint(values, width)
    assert len(packed) == -(-1001 * width // 8)
    assert np.array_equal(unpack_uint(packed, width, 1001).astype(np.uint64), values)


def test_bit_packing_rejects_values_too_wide() -> None:
    with pytest.raises(ValueError):
        pack_uint(np.array([8]), 3)


def test_frequencies_sum_to_the_scale_and_keep_rare_symbols() -> None:
    counts = np.array([1_000_000, 1, 0, 3, 50])
    freqs = normalized_frequencies(counts)
    assert int(freqs.sum()) == 1 << RANS_SCALE_BITS
    assert freqs[2] == 0 and freqs[1] >= 1 and freqs[3] >= 1


@pytest.mark.parametrize("lanes", [1, 7, 64])
def test_rans_round_trips(lanes: int) -> None:
    rng = np.random.default_rng(lanes)
    symbols = rng.choice(5, size=5003, p=[0.6, 0.2, 0.1, 0.07, 0.03])
    assert np.array_equal(rans_decode(rans_encode(symbols, lanes), symbols.size), symbols)


def test_rans_reaches_the_empirical_entropy() -> None:
    rng = np.random.default_rng(0)
    symbols = rng.choice(3, size=200_000, p=[0.5, 0.25, 0.25])  # 1.5 bits a symbol
    coded = rans_encode(symbols)
    bound = empirical_entropy_bytes(symbols)
    assert len(coded) < 1.005 * bound + 512  # + header, frequency table and final lane states
    assert np.array_equal(rans_decode(coded, symbols.size), symbols)


@pytest.mark.parametrize("codecs", [(), ("zstd",), ("xz",), ("rans",), ("zstd", "xz", "rans")])
@pytest.mark.parametrize("width", [2, 8, 13])
def test_every_codec_is_lossless(codecs: tuple[str, ...], width: int) -> None:
    rng = np.random.default_rng(width)
    values = np.minimum(rng.geometric(0.3, size=4000) - 1, (1 << width) - 1).astype(np.uint32)
    stream = encode_symbols(values, width, level=3, codecs=codecs)
    assert np.array_equal(decode_symbols(stream.blob).astype(np.uint32), values)
    allowed = {"stored", *codecs}
    assert stream.codec in allowed
    assert len(stream.blob) == min(stream.candidate_bytes.values())


def test_skewed_streams_save_bytes_and_noise_does_not_grow() -> None:
    rng = np.random.default_rng(1)
    skewed = rng.choice(4, size=50_000, p=[0.7, 0.1, 0.1, 0.1]).astype(np.uint8)
    stream = encode_symbols(skewed, 2)
    assert stream.packed_bytes == 50_000 * 2 // 8
    assert stream.saved_bytes > 0.25 * stream.packed_bytes  # 1.36 bits of 2 -> about 32% saved
    noise = rng.integers(0, 256, size=20_000, dtype=np.uint8)
    plain = encode_bytes(noise.tobytes())
    assert plain.codec == "stored" and plain.saved_bytes == -5  # the blob header only (count 20000: 3 bytes)
    assert decode_bytes(plain.blob) == noise.tobytes()


def test_lz_coders_win_on_repetitive_bytes() -> None:
    data = b"agent forge " * 4000
    stream = encode_bytes(data)
    assert stream.codec in ("zstd", "xz") and len(stream.blob) < len(data) // 50
    assert len(stream.blob) == min(stream.candidate_bytes.values())
    assert decode_bytes(stream.blob) == data


@pytest.mark.parametrize("size", [0, 100, 5000, 70_000])
def test_xz_dictionary_cut_to_the_input_gives_the_same_bytes(size: int) -> None:
    rng = np.random.default_rng(size)
    data = bytes(rng.choice([0, 1, 2, 200], size=size, p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint8)) + bytes(size // 3)
    full = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]  # xz -9e's 64 MiB dictionary
    assert xz_encode(data) == lzma.compress(data, format=lzma.FORMAT_RAW, filters=full)
    assert xz_9e_size(data) == len(lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME))
    assert xz_filters(size)[0]["dict_size"] == max(size, 4096)
    assert lzma.decompress(xz_encode(data), format=lzma.FORMAT_RAW, filters=full) == data  # the full decoder reads it


def test_xz_stream_is_what_xz_9e_makes_without_its_framing() -> None:
    rng = np.random.default_rng(5)
    data = bytes(rng.choice([0, 1, 2, 200], size=30_000, p=[0.4, 0.3, 0.2, 0.1]).astype(np.uint8)) * 2
    stream = encode_bytes(data, codecs=("xz",))
    assert stream.codec == "xz"
    framed = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    assert len(stream.blob) < len(framed)  # same LZMA2 data, minus the .xz header, index and check
    assert decode_bytes(stream.blob) == data


def test_empty_stream_round_trips() -> None:
    stream = encode_symbols(np.zeros(0, dtype=np.uint8), 8)
    assert decode_symbols(stream.blob).size == 0


def test_unknown_codec_is_refused() -> None:
    blob = bytearray(encode_bytes(b"abc").blob)
    blob[0] = 0x80 | 9
    with pytest.raises(ValueError, match="codec"):
        decode_symbols(bytes(blob))
    for short in (b"\x09abc", b"\x80\x08\xff"):  # an old header cut short; a varint that never ends
        with pytest.raises(ValueError, match="shorter"):
            decode_symbols(short)


@pytest.mark.parametrize("count", [0, 1, 127, 128, 20_000, 2**40 + 5])
def test_blob_headers_hold_any_count_in_a_few_bytes(count: int) -> None:
    header = blob_header(3, 13, count)
    assert read_blob_header(header + b"payload") == (3, 13, count, len(header))
    assert len(header) == 2 + max(1, -(-count.bit_length() // 7))


def test_blobs_with_the_old_fixed_header_still_decode() -> None:
    values = np.arange(300, dtype=np.uint16) % 7
    new = encode_symbols(values, 3, codecs=())
    _, _, _, offset = read_blob_header(new.blob)
    old = struct.pack("<BBQ", 0, 3, values.size) + new.blob[offset:]
    assert np.array_equal(decode_symbols(old), values)
