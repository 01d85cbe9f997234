"""SeedLM (Shafipour et al. 2024): each block of weights as an LFSR seed plus a few quantized coefficients.

A block ``w`` of ``C`` consecutive weights is approximated by ``U(s) @ t``: ``U(s)`` is a ``C x P`` matrix
filled row-major with ``C*P`` consecutive states of a ``K``-bit Fibonacci LFSR started at seed ``s``, each
state ``x`` mapped to ``(x - 2**(K-1)) / 2**(K-1)`` in ``(-1, 1)``; ``t`` holds ``P`` signed ``Q``-bit
integers times ``2**e`` with one exponent per block. A block costs ``K + E + P*Q`` bits (36 bits for 8
weights, 4.5 bits a weight, with the defaults) and decoding needs only the seed, not a stored basis.

Encoding searches every seed ``1 .. 2**K - 1`` for the one whose basis, after coefficient quantization,
reconstructs the block best. Exhaustive search is made cheap and stays exact:

1. the least-squares residual of every seed is ``|w|^2 - w^T Pi(s) w`` with ``Pi(s)`` the projection on the
   basis' column space, so one GEMM of the block's ``C(C+1)/2`` products ``w_i w_j`` against a precomputed
   table gives it for all seeds at once;
2. the few seeds with the smallest residual are quantized and scored exactly;
3. the quantized error of a seed is never below its least-squares residual, so only the seeds whose residual
   is below the best quantized error found can still win; they are scored too. The result equals the
   brute-force argmin over all seeds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
from torch import Tensor

# Maximal-length Fibonacci taps, 1-indexed from the output end (Xilinx XAPP052, table 3). Each polynomial
# is primitive, so the register cycles through all 2**K - 1 non-zero states; the tests check the period.
MAXIMAL_TAPS: dict[int, tuple[int, ...]] = {
    2: (2, 1),
    3: (3, 2),
    4: (4, 3),
    5: (5, 3),
    6: (6, 5),
    7: (7, 6),
    8: (8, 6, 5, 4),
    9: (9, 5),
    10: (10, 7),
    11: (11, 9),
    12: (12, 6, 4, 1),
    13: (13, 4, 3, 1),
    14: (14, 5, 3, 1),
    15: (15, 14),
    16: (16, 15, 13, 4),
    17: (17, 14),
    18: (18, 11),
    19: (19, 6, 2, 1),
    20: (20, 17),
}


def lfsr_next(state: int, taps: Sequence[int]) -> int:
    """One step of a right-shifting Fibonacci LFSR: the XOR of the tapped bits enters at the top."""
    width = max(taps)
    bit = 0
    for tap in taps:
        bit ^= state >> (width - tap)
    return (state >> 1) | ((bit & 1) << (width - 1))


@functools.lru_cache(maxsize=8)
def lfsr_orbit(taps: tuple[int, ...]) -> np.ndarray:
    """The full cycle of states starting from state 1 (length ``2**K - 1`` for maximal taps)."""
    width = max(taps)
    shifts = [width - tap for tap in taps]
    top = width - 1
    states = np.empty((1 << width) - 1, dtype=np.int64)
    state, length = 1, 0
    while length < states.size:
        states[length] = state
        length += 1
        bit = 0
        for shift in shifts:
            bit ^= state >> shift
        state = (state >> 1) | ((bit & 1) << top)
        if state == 1:
            break
    return states[:length]


def lfsr_sequence(seed: int, taps: Sequence[int], n: int) -> np.ndarray:
    """``n`` consecutive states of the LFSR, the first being ``seed`` itself (read from the cached cycle)."""
    taps = tuple(int(t) for t in taps)
    width = max(taps)
    if not 0 < seed < (1 << width):
        raise ValueError(f"seed must be in 1..{(1 << width) - 1}, got {seed}")
    orbit = lfsr_orbit(taps)
    where = np.flatnonzero(orbit == seed)
    if where.size == 0:
        raise ValueError(f"seed {seed} is not on the cycle of taps {taps} (they are not maximal-length)")
    return orbit[(where[0] + np.arange(n)) % orbit.size]


@dataclass(frozen=True)
class SeedLMConfig:
    """SeedLM block shape: ``block`` weights (C) from ``coeffs`` (P) coefficients of ``coeff_bits`` (Q)."""

    block: int = 8
    coeffs: int = 4
    lfsr_bits: int = 16
    coeff_bits: int = 4
    exponent_bits: int = 4
    shortlist: int = 32
    chunk_blocks: int = 64

    def __post_init__(self) -> None:
        if self.lfsr_bits not in MAXIMAL_TAPS:
            raise ValueError(f"lfsr_bits must be one of {sorted(MAXIMAL_TAPS)}, got {self.lfsr_bits}")
        if not 1 <= self.coeffs <= self.block:
            raise ValueError("coeffs must be between 1 and block")
        if not 2 <= self.coeff_bits <= 8 or not 1 <= self.exponent_bits <= 8:
            raise ValueError("coeff_bits must be 2..8 and exponent_bits 1..8")

    @property
    def bits_per_weight(self) -> float:
        return (self.lfsr_bits + self.exponent_bits + self.coeffs * self.coeff_bits) / self.block

    @property
    def taps(self) -> tuple[int, ...]:
        return MAXIMAL_TAPS[self.lfsr_bits]


@dataclass(frozen=True)
class SeedBasisTable:
    """Every seed's basis, pseudo-inverse and projection table, indexed by ``seed - 1``."""

    bases: Tensor  # (S, C, P)
    pinv: Tensor  # (S, P, C)
    projection: Tensor  # (S, C*(C+1)/2): Pi(s) entries on and above the diagonal, off-diagonal doubled
    pair_i: Tensor
    pair_j: Tensor


@functools.lru_cache(maxsize=4)
def seed_basis_table(lfsr_bits: int, block: int, coeffs: int) -> SeedBasisTable:
    """Precompute what the search needs for all ``2**K - 1`` seeds (cached: a few MB for K=16)."""
    orbit = lfsr_orbit(MAXIMAL_TAPS[lfsr_bits])
    span = block * coeffs
    windows = orbit[(np.arange(orbit.size)[:, None] + np.arange(span)) % orbit.size]
    by_seed = np.empty_like(windows)
    by_seed[orbit - 1] = windows
    half = float(1 << (lfsr_bits - 1))
    bases = torch.from_numpy((by_seed - half) / half).float().reshape(-1, block, coeffs)
    pinv = torch.linalg.pinv(bases.double())
    projection = bases.double() @ pinv
    pair_i, pair_j = torch.triu_indices(block, block)
    doubled = torch.where(pair_i == pair_j, 1.0, 2.0).double()
    flat = projection[:, pair_i, pair_j] * doubled
    return SeedBasisTable(bases, pinv.float(), flat.float().contiguous(), pair_i, pair_j)


@dataclass(frozen=True)
class SeedLMEncoded:
    """A tensor in SeedLM form: one seed, one exponent code and ``P`` integer coefficients per block."""

    shape: tuple[int, ...]
    config: SeedLMConfig
    exponent_high: int
    seeds: Tensor  # (n_blocks,) int64 in 1..2**K-1
    exponent_codes: Tensor  # (n_blocks,) int64, exponent = exponent_high - (2**E - 1) + code
    coefficients: Tensor  # (n_blocks, P) int64 in [-2**(Q-1), 2**(Q-1) - 1]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def payload_bits(self) -> int:
        """Bits of seeds, exponents and coefficients before entropy coding."""
        cfg = self.config
        return self.seeds.numel() * (cfg.lfsr_bits + cfg.exponent_bits + cfg.coeffs * cfg.coeff_bits)

    def params(self) -> dict:
        """JSON-ready description (the container stores it in its header)."""
        return {
            "config": asdict(self.config),
            "exponent_high": self.exponent_high,
            "n_blocks": len(self.seeds),
        }

    def symbol_streams(self) -> dict[str, tuple[np.ndarray, int]]:
        """Unsigned symbol streams and their bit widths, for packing and entropy coding."""
        cfg = self.config
        offset = 1 << (cfg.coeff_bits - 1)
        return {
            "seeds": (self.seeds.numpy(), cfg.lfsr_bits),
            "exponents": (self.exponent_codes.numpy(), cfg.exponent_bits),
            "coefficients": ((self.coefficients + offset).reshape(-1).numpy(), cfg.coeff_bits),
        }

    @classmethod
    def from_streams(
        cls, shape: Sequence[int], params: dict, streams: dict[str, np.ndarray]
    ) -> SeedLMEncoded:
        cfg = SeedLMConfig(**params["config"])
        offset = 1 << (cfg.coeff_bits - 1)
        coefficients = torch.from_numpy(streams["coefficients"].astype(np.int64)) - offset
        return cls(
            shape=tuple(int(s) for s in shape),
            config=cfg,
            exponent_high=int(params["exponent_high"]),
            seeds=torch.from_numpy(streams["seeds"].astype(np.int64)),
            exponent_codes=torch.from_numpy(streams["exponents"].astype(np.int64)),
            coefficients=coefficients.reshape(-1, cfg.coeffs),
        )


def _exponent_high(weight: Tensor, cfg: SeedLMConfig) -> int:
    """Top of the per-tensor exponent window: coefficients of a good fit stay within ~2x the largest weight
    (basis entries have variance 1/3), so 8x headroom loses nothing and leaves 2**E - 1 steps below."""
    amax = float(weight.abs().max()) if weight.numel() else 0.0
    qmax = (1 << (cfg.coeff_bits - 1)) - 1
    return math.ceil(math.log2(max(amax, 1e-30) * 8.0 / qmax))


def _quantize(t: Tensor, cfg: SeedLMConfig, exponent_high: int) -> tuple[Tensor, Tensor]:
    """Shared-exponent integer quantization of coefficient rows ``t (..., P)``: (ints, exponent codes)."""
    qmax = (1 << (cfg.coeff_bits - 1)) - 1
    low = exponent_high - (1 << cfg.exponent_bits) + 1
    amax = t.abs().amax(dim=-1).clamp_min(1e-30)
    exponent = torch.ceil(torch.log2(amax / qmax)).clamp(low, exponent_high)
    ints = torch.round(t / torch.exp2(exponent).unsqueeze(-1)).clamp(-qmax - 1, qmax)
    return ints, (exponent - low).long()


def _coefficient_values(ints: Tensor, codes: Tensor, cfg: SeedLMConfig, exponent_high: int) -> Tensor:
    low = exponent_high - (1 << cfg.exponent_bits) + 1
    return ints.float() * torch.exp2((codes + low).float()).unsqueeze(-1)


def _reconstruct(bases: Tensor, values: Tensor) -> Tensor:
    """``U @ t`` for rows of bases ``(n, C, P)`` and values ``(n, P)``, in one fixed summation order."""
    return (bases * values.unsqueeze(-2)).sum(dim=-1)


@dataclass(frozen=True)
class _Choice:
    """The best coding found so far for a batch of blocks."""

    error: Tensor  # (B,)
    seed_index: Tensor  # (B,) row of the basis table, i.e. seed - 1
    ints: Tensor  # (B, P)
    codes: Tensor  # (B,)

    def take(self, picks: Tensor) -> _Choice:
        return _Choice(self.error[picks], self.seed_index[picks], self.ints[picks], self.codes[picks])

    def replace(self, rows: Tensor, other: _Choice) -> _Choice:
        fields = [self.error.clone(), self.seed_index.clone(), self.ints.clone(), self.codes.clone()]
        for target, value in zip(
            fields, (other.error, other.seed_index, other.ints, other.codes), strict=True
        ):
            target[rows] = value
        return _Choice(*fields)


def _score(
    blocks: Tensor, rows: Tensor, seed_index: Tensor, table: SeedBasisTable, cfg: SeedLMConfig, high: int
) -> _Choice:
    """Exact squared error of block ``rows[k]`` coded with seed ``seed_index[k] + 1`` (quantized)."""
    w = blocks[rows]
    t = (table.pinv[seed_index] @ w.unsqueeze(-1)).squeeze(-1)
    ints, codes = _quantize(t, cfg, high)
    recon = _reconstruct(table.bases[seed_index], _coefficient_values(ints, codes, cfg, high))
    return _Choice(((w - recon) ** 2).sum(dim=-1), seed_index, ints, codes)


def _best_of_shortlist(
    blocks: Tensor, shortlist: Tensor, table: SeedBasisTable, cfg: SeedLMConfig, high: int
) -> _Choice:
    """Score ``shortlist (B, m)`` seed rows per block exactly and keep each block's best."""
    n_blocks, m = shortlist.shape
    rows = torch.arange(n_blocks, device=blocks.device).repeat_interleave(m)
    scored = _score(blocks, rows, shortlist.reshape(-1), table, cfg, high)
    best = scored.error.reshape(n_blocks, m).argmin(dim=1)
    return scored.take(torch.arange(n_blocks, device=blocks.device) * m + best)


def _first_minimum_per_row(rows: Tensor, error: Tensor) -> Tensor:
    """Index of the smallest error of each row (``rows`` sorted ascending; ties go to the lower seed)."""
    order = torch.argsort(error, stable=True)
    order = order[torch.argsort(rows[order], stable=True)]
    first = torch.ones_like(order, dtype=torch.bool)
    first[1:] = rows[order][1:] != rows[order][:-1]
    return order[first]


def _score_survivors(
    blocks: Tensor, energy: Tensor, best: _Choice, table: SeedBasisTable, cfg: SeedLMConfig, high: int
) -> _Choice:
    """Score every seed whose least-squares residual (a lower bound on its error) is below the best error."""
    sq = (blocks**2).sum(dim=1)
    floor = (sq - best.error - 1e-4 * sq).unsqueeze(1)
    rows, seeds = (energy > floor).nonzero(as_tuple=True)
    scored = _score(blocks, rows, seeds, table, cfg, high)
    better = scored.error < best.error[rows]
    rows, scored = rows[better], scored.take(better)
    if rows.numel() == 0:
        return best
    winners = _first_minimum_per_row(rows, scored.error)
    return best.replace(rows[winners], scored.take(winners))


def _search_chunk(blocks: Tensor, table: SeedBasisTable, cfg: SeedLMConfig, high: int) -> _Choice:
    """Exact best seed per block: shortlist by residual, then certify or widen the search."""
    energy = (blocks[:, table.pair_i] * blocks[:, table.pair_j]) @ table.projection.T
    top = energy.topk(min(cfg.shortlist, energy.shape[1]), dim=1)
    best = _best_of_shortlist(blocks, top.indices, table, cfg, high)
    sq = (blocks**2).sum(dim=1)
    unsure = (sq - top.values[:, -1]) < best.error + 1e-4 * sq
    if not bool(unsure.any()):
        return best
    rows = unsure.nonzero().squeeze(1)
    widened = _score_survivors(blocks[rows], energy[rows], best.take(rows), table, cfg, high)
    return best.replace(rows, widened)


def _table_on(device: torch.device, cfg: SeedLMConfig) -> SeedBasisTable:
    table = seed_basis_table(cfg.lfsr_bits, cfg.block, cfg.coeffs)
    if device.type == "cpu":
        return table
    return SeedBasisTable(*(getattr(table, f.name).to(device) for f in fields(table)))


def seedlm_encode(
    weight: Tensor, config: SeedLMConfig | None = None, device: str | torch.device = "cpu"
) -> SeedLMEncoded:
    """Find, for every block of ``config.block`` weights (row-major, zero-padded), its best seed.

    ``device`` only moves the search (e.g. to CUDA); the result is on the CPU.
    """
    cfg = config or SeedLMConfig()
    device = torch.device(device)
    table = _table_on(device, cfg)
    flat = weight.detach().reshape(-1).to(device=device, dtype=torch.float32)
    pad = (-flat.numel()) % cfg.block
    blocks = torch.cat([flat, flat.new_zeros(pad)]).reshape(-1, cfg.block)
    high = _exponent_high(flat, cfg)
    found = [
        _search_chunk(blocks[i : i + cfg.chunk_blocks], table, cfg, high)
        for i in range(0, blocks.shape[0], cfg.chunk_blocks)
    ]
    seed_index = torch.cat([c.seed_index for c in found]) if found else torch.zeros(0, dtype=torch.long)
    codes = torch.cat([c.codes for c in found]) if found else torch.zeros(0, dtype=torch.long)
    ints = torch.cat([c.ints for c in found]) if found else torch.zeros(0, cfg.coeffs)
    return SeedLMEncoded(tuple(weight.shape), cfg, high, seed_index.cpu() + 1, codes.cpu(), ints.long().cpu())


def seedlm_decode(encoded: SeedLMEncoded, chunk_blocks: int = 1 << 16) -> Tensor:
    """Rebuild the float32 tensor by regenerating each block's basis from its seed."""
    cfg = encoded.config
    table = seed_basis_table(cfg.lfsr_bits, cfg.block, cfg.coeffs)
    values = _coefficient_values(encoded.coefficients, encoded.exponent_codes, cfg, encoded.exponent_high)
    out = torch.empty(encoded.seeds.numel(), cfg.block)
    for start in range(0, out.shape[0], chunk_blocks):
        stop = start + chunk_blocks
        out[start:stop] = _reconstruct(table.bases[encoded.seeds[start:stop] - 1], values[start:stop])
    return out.reshape(-1)[: encoded.numel].reshape(encoded.shape)
