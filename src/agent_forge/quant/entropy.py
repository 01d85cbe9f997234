"""The last, lossless stage of Phase 8: fixed-width bit packing, zstd, xz's LZMA2 and a static rANS coder.

Every stream is a run of unsigned symbols of a known bit width (a byte stream is width 8). It is stored
four ways and the smallest wins: the packed bits as they are, zstd or LZMA2 (what ``xz -9e`` runs, without
the ``.xz`` file framing) over the packed bits, or an interleaved rANS coder driven by the stream's own
measured symbol distribution (an order-0 model, so it reaches the stream's empirical entropy, which LZ
matching misses on noise-like index streams; LZMA2 wins where a stream repeats itself). Our own coder is
kept only where it measures smaller than the standard ones.

The rANS coder uses 32-bit states and 16-bit renormalisation words (Duda 2013; Giesen's ``ryg_rans``
layout). Symbols are dealt round-robin to ``lanes`` independent states so one numpy step codes a whole row
of lanes at once; the decoder pops each row's words from the end of the encoder's word stack.

Blob layout: ``codec | 0x80`` (u8), ``width`` (u8), ``count`` (LEB128 varint), payload. Blobs written before
the varint (the 0x80 bit clear) hold ``count`` as a little-endian u64 and are still read.
"""

from __future__ import annotations

import lzma
import struct
from dataclasses import dataclass, field

import numpy as np
import zstandard

CODEC_STORED = 0
CODEC_ZSTD = 1
CODEC_RANS = 2
CODEC_XZ = 3
CODEC_NAMES = {CODEC_STORED: "stored", CODEC_ZSTD: "zstd", CODEC_RANS: "rans", CODEC_XZ: "xz"}
DEFAULT_CODECS = ("zstd", "xz", "rans")
# xz -9e's filter, as a raw LZMA2 stream: the decoder knows it, so no .xz header or check is stored
XZ_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]
XZ_MIN_DICT = 4096  # liblzma's least dictionary size

RANS_SCALE_BITS = 15
RANS_LOW = 1 << 16
RANS_MAX_DISTINCT = 1 << 13
RANS_MAX_SYMBOL = (1 << 16) - 1
_OLD_BLOB_HEADER = struct.Struct("<BBQ")
_VARINT_FLAG = 0x80
_RANS_HEADER = struct.Struct("<IBI")
_PACK_CHUNK = 1 << 18


def symbol_dtype(width: int) -> np.dtype:
    """The narrowest unsigned numpy type holding ``width``-bit symbols."""
    if not 1 <= width <= 64:
        raise ValueError(f"symbol width must be 1..64 bits, got {width}")
    for bits, dtype in ((8, np.uint8), (16, np.uint16), (32, np.uint32)):
        if width <= bits:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


def pack_uint(values: np.ndarray, width: int) -> bytes:
    """Pack unsigned integers into ``width`` bits each, least significant bit first."""
    flat = np.ascontiguousarray(values).reshape(-1)
    if flat.size and (flat.min() < 0 or int(flat.max()) >> width):
        raise ValueError(f"values do not fit in {width} unsigned bits")
    if width in (8, 16, 32, 64):
        return flat.astype(symbol_dtype(width).newbyteorder("<"), copy=False).tobytes()
    work = np.uint32 if width <= 32 else np.uint64
    shifts = np.arange(width, dtype=work)
    pieces = []
    for start in range(0, flat.size, _PACK_CHUNK):
        chunk = flat[start : start + _PACK_CHUNK].astype(work)
        bits = ((chunk[:, None] >> shifts) & work(1)).astype(np.uint8)
        pieces.append(np.packbits(bits.reshape(-1), bitorder="little").tobytes())
    return b"".join(pieces)


def unpack_uint(data: bytes, width: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack_uint`: ``count`` symbols of ``width`` bits, in their narrowest dtype."""
    dtype = symbol_dtype(width)
    if width in (8, 16, 32, 64):
        return np.frombuffer(data, dtype=dtype.newbyteorder("<"), count=count).astype(dtype)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size * 8 < count * width:
        raise ValueError("packed stream is shorter than its symbol count says")
    out = np.empty(count, dtype=dtype)
    weights = (np.uint64(1) << np.arange(width, dtype=np.uint64)).astype(np.uint64)
    for start in range(0, count, _PACK_CHUNK):
        stop = min(count, start + _PACK_CHUNK)
        bit_lo, bit_hi = start * width, stop * width
        byte_lo = bit_lo // 8
        bits = np.unpackbits(raw[byte_lo : (bit_hi + 7) // 8], bitorder="little")
        bits = bits[bit_lo - byte_lo * 8 : bit_hi - byte_lo * 8].reshape(-1, width)
        out[start:stop] = (bits.astype(np.uint64) * weights).sum(axis=1, dtype=np.uint64).astype(dtype)
    return out


def zstd_encode(data: bytes, level: int = 19) -> bytes:
    return zstandard.ZstdCompressor(level=level).compress(data)


def zstd_decode(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().decompress(data)


def xz_filters(size: int) -> list[dict]:
    """``xz -9e``'s LZMA2 filter with its 64 MiB dictionary cut to ``size`` bytes (at least 4 KiB), as the
    ``xz`` tool cuts it for a small file: a dictionary longer than the input holds nothing more, so the
    output bytes are the same, but setting up the full one costs ~0.15 s a call (measured: Phase 8's
    ~270 streams spent 40 s of the smoke preset's 43 there). The full-size decoder reads either."""
    return [{**XZ_FILTERS[0], "dict_size": min(max(size, XZ_MIN_DICT), 64 << 20)}]


def xz_encode(data: bytes) -> bytes:
    """LZMA2 at ``xz -9e``'s settings, without the .xz container (the blob header says what it is)."""
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=xz_filters(len(data)))


def xz_decode(data: bytes) -> bytes:
    return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=XZ_FILTERS)


def blob_header(codec: int, width: int, count: int) -> bytes:
    """The few bytes before a blob's payload (see the module docstring)."""
    varint = bytearray()
    while True:
        low, count = count & 0x7F, count >> 7
        varint.append(low | (0x80 if count else 0))
        if not count:
            return bytes([codec | _VARINT_FLAG, width]) + bytes(varint)


def read_blob_header(blob: bytes) -> tuple[int, int, int, int]:
    """(codec, width, count, payload offset) of a blob, in either header layout."""
    if not blob[0] & _VARINT_FLAG:
        if len(blob) < _OLD_BLOB_HEADER.size:
            raise ValueError("entropy blob is shorter than its header")
        codec, width, count = _OLD_BLOB_HEADER.unpack_from(blob)
        return codec, width, count, _OLD_BLOB_HEADER.size
    count, shift, offset = 0, 0, 2
    while True:
        if offset >= len(blob):
            raise ValueError("entropy blob is shorter than its header")
        byte = blob[offset]
        count |= (byte & 0x7F) << shift
        offset, shift = offset + 1, shift + 7
        if not byte & 0x80:
            return blob[0] & ~_VARINT_FLAG, blob[1], count, offset


def normalized_frequencies(counts: np.ndarray, scale_bits: int = RANS_SCALE_BITS) -> np.ndarray:
    """Scale symbol counts to sum to ``2**scale_bits``, keeping every seen symbol at frequency >= 1."""
    total = 1 << scale_bits
    counts = np.asarray(counts, dtype=np.int64)
    seen = counts > 0
    if int(seen.sum()) > total // 2:
        raise ValueError(f"{int(seen.sum())} distinct symbols exceed what {scale_bits}-bit frequencies hold")
    freqs = np.where(seen, np.maximum(1, counts * total // max(1, int(counts.sum()))), 0)
    excess = int(freqs.sum()) - total
    while excess > 0:
        top = int(np.argmax(freqs))
        take = min(excess, int(freqs[top]) - 1)
        freqs[top] -= take
        excess -= take
    freqs[int(np.argmax(counts))] -= excess
    return freqs


def _lanes_for(count: int) -> int:
    """Enough lanes to keep each numpy step busy, few enough that the final states cost <1% of the output."""
    lanes = 1
    while lanes < 4096 and lanes * 2048 <= count:
        lanes *= 2
    return lanes


def rans_encode(symbols: np.ndarray, lanes: int | None = None) -> bytes:
    """Code ``symbols`` (non-negative integers) with a static interleaved rANS model of their counts."""
    sym = np.ascontiguousarray(symbols).reshape(-1).astype(np.int64)
    count = sym.size
    counts = np.bincount(sym) if count else np.zeros(1, np.int64)
    freqs = normalized_frequencies(counts)
    lanes = lanes or _lanes_for(count)
    states, words = _rans_encode_lanes(sym, freqs, lanes)
    header = _RANS_HEADER.pack(lanes, RANS_SCALE_BITS, freqs.size)
    return b"".join([header, freqs.astype("<u2").tobytes(), states.astype("<u4").tobytes(), words.tobytes()])


def _rans_encode_lanes(sym: np.ndarray, freqs: np.ndarray, lanes: int) -> tuple[np.ndarray, np.ndarray]:
    steps = -(-sym.size // lanes)
    grid = np.full(steps * lanes, int(np.argmax(freqs)), dtype=np.int64)
    grid[: sym.size] = sym
    grid = grid.reshape(steps, lanes)
    freq = freqs.astype(np.uint64)
    start = (np.cumsum(freqs) - freqs).astype(np.uint64)
    limit = ((RANS_LOW >> RANS_SCALE_BITS) << 16) * freq
    state = np.full(lanes, RANS_LOW, dtype=np.uint64)
    pushed: list[np.ndarray] = []
    for row in grid[::-1]:
        f = freq[row]
        spill = state >= limit[row]
        pushed.append((state[spill] & np.uint64(0xFFFF)).astype("<u2"))
        state = np.where(spill, state >> np.uint64(16), state)
        state = ((state // f) << np.uint64(RANS_SCALE_BITS)) + (state % f) + start[row]
    words = np.concatenate(pushed) if pushed else np.zeros(0, "<u2")
    return state, words


def rans_decode(payload: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`rans_encode`; returns ``count`` symbols as int64."""
    lanes, scale_bits, alphabet = _RANS_HEADER.unpack_from(payload)
    offset = _RANS_HEADER.size
    freqs = np.frombuffer(payload, "<u2", alphabet, offset).astype(np.uint64)
    offset += 2 * alphabet
    state = np.frombuffer(payload, "<u4", lanes, offset).astype(np.uint64)
    words = np.frombuffer(payload, "<u2", offset=offset + 4 * lanes).astype(np.uint64)
    start = np.cumsum(freqs) - freqs
    slot_symbol = np.repeat(np.arange(alphabet, dtype=np.int64), freqs.astype(np.int64))
    mask, top = np.uint64((1 << scale_bits) - 1), words.size
    steps = -(-count // lanes)
    out = np.empty((steps, lanes), dtype=np.int64)
    for step in range(steps):
        slot = state & mask
        sym = slot_symbol[slot.astype(np.int64)]
        out[step] = sym
        state = freqs[sym] * (state >> np.uint64(scale_bits)) + slot - start[sym]
        refill = state < RANS_LOW
        need = int(refill.sum())
        if need:
            state[refill] = (state[refill] << np.uint64(16)) | words[top - need : top]
            top -= need
    return out.reshape(-1)[:count]


def _rans_applies(flat: np.ndarray) -> bool:
    """rANS needs a small alphabet: its frequency table is stored and each symbol needs a 15-bit slot."""
    if not flat.size or int(flat.max()) > RANS_MAX_SYMBOL:
        return False
    return int(np.count_nonzero(np.bincount(flat.astype(np.int64)))) <= RANS_MAX_DISTINCT


@dataclass(frozen=True)
class EncodedStream:
    """One entropy-coded stream: the self-describing blob and what each codec would have cost."""

    blob: bytes
    codec: str
    width: int
    count: int
    packed_bytes: int
    candidate_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def saved_bytes(self) -> int:
        """Bytes the entropy stage saved against the plainly packed stream."""
        return self.packed_bytes - len(self.blob)


def encode_symbols(
    symbols: np.ndarray, width: int, level: int = 19, codecs: tuple[str, ...] = DEFAULT_CODECS
) -> EncodedStream:
    """Code a stream of ``width``-bit symbols with whichever codec is smallest (stored always competes)."""
    flat = np.ascontiguousarray(symbols).reshape(-1)
    packed = pack_uint(flat, width)
    payloads = {CODEC_STORED: packed}
    if "zstd" in codecs:
        payloads[CODEC_ZSTD] = zstd_encode(packed, level)
    if "xz" in codecs:
        payloads[CODEC_XZ] = xz_encode(packed)
    if "rans" in codecs and _rans_applies(flat):
        payloads[CODEC_RANS] = rans_encode(flat)
    codec = min(payloads, key=lambda c: (len(payloads[c]), c))
    header = blob_header(codec, width, flat.size)
    blob = header + payloads[codec]
    sizes = {CODEC_NAMES[c]: len(p) + len(header) for c, p in payloads.items()}
    return EncodedStream(blob, CODEC_NAMES[codec], width, int(flat.size), len(packed), sizes)


def encode_bytes(data: bytes, level: int = 19, codecs: tuple[str, ...] = DEFAULT_CODECS) -> EncodedStream:
    """A byte stream is a stream of 8-bit symbols."""
    return encode_symbols(np.frombuffer(data, dtype=np.uint8), 8, level, codecs)


def decode_symbols(blob: bytes) -> np.ndarray:
    """Inverse of :func:`encode_symbols`, in the narrowest unsigned dtype of the stream's width."""
    codec, width, count, offset = read_blob_header(blob)
    payload = memoryview(blob)[offset:]
    if codec == CODEC_RANS:
        return rans_decode(bytes(payload), count).astype(symbol_dtype(width))
    if codec == CODEC_ZSTD:
        return unpack_uint(zstd_decode(bytes(payload)), width, count)
    if codec == CODEC_XZ:
        return unpack_uint(xz_decode(bytes(payload)), width, count)
    if codec == CODEC_STORED:
        return unpack_uint(bytes(payload), width, count)
    raise ValueError(f"unknown entropy codec id {codec}")


def decode_bytes(blob: bytes) -> bytes:
    """Inverse of :func:`encode_bytes`."""
    return decode_symbols(blob).astype(np.uint8, copy=False).tobytes()
