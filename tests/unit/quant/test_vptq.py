"""VPTQ: vector layout, k-means, error falling with codebook size, residual codebook, compact indices."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from agent_forge.quant.entropy import pack_uint, unpack_uint
from agent_forge.quant.vptq import (
    VPTQConfig,
    VPTQEncoded,
    from_vectors,
    kmeans,
    nearest,
    to_vectors,
    vptq_decode,
    vptq_encode,
)


def relative_error(weight: torch.Tensor, config: VPTQConfig, importance: torch.Tensor | None = None) -> float:
    decoded = vptq_decode(vptq_encode(weight, config, importance))
    return float(((decoded - weight) ** 2).mean() / weight.var())


@pytest.mark.parametrize("shape", [(12, 5), (7, 3), (9,), (4, 2, 3)])
@pytest.mark.parametrize("vector", [1, 2, 4])
def test_vector_layout_round_trips(shape: tuple[int, ...], vector: int) -> None:
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    vectors = to_vectors(weight, vector)
    assert vectors.shape[1] == vector
    assert torch.equal(from_vectors(vectors, shape, vector), weight)


def test_a_vector_runs_down_one_column() -> None:
    weight = torch.arange(12.0).reshape(4, 3)
    vectors = to_vectors(weight, 2)
    assert vectors[0].tolist() == [0.0, 3.0]  # rows 0-1 of column 0
    assert vectors[1].tolist() == [6.0, 9.0]  # rows 2-3 of column 0
    assert vectors[2].tolist() == [1.0, 4.0]


def test_nearest_is_the_brute_force_argmin() -> None:
    gen = torch.Generator().manual_seed(1)
    vectors, centroids = torch.randn(300, 4, generator=gen), torch.randn(17, 4, generator=gen)
    index, distance = nearest(vectors, centroids, chunk=64)
    full = torch.cdist(vectors.double(), centroids.double()) ** 2
    assert torch.equal(index, full.argmin(dim=1))
    assert torch.allclose(distance.double(), full.min(dim=1).values, atol=1e-4)


def test_kmeans_finds_separated_clusters() -> None:
    gen = torch.Generator().manual_seed(2)
    centers = torch.tensor([[5.0, 5.0], [-5.0, 5.0], [0.0, -6.0]])
    points = torch.cat([c + 0.1 * torch.randn(200, 2, generator=gen) for c in centers])
    found = kmeans(points, 3, 20, torch.Generator().manual_seed(0))
    distances = torch.cdist(centers, found).min(dim=1).values
    assert float(distances.max()) < 0.05


def test_kmeans_is_deterministic_per_seed_and_uses_every_centroid() -> None:
    points = torch.randn(500, 3, generator=torch.Generator().manual_seed(3))
    a = kmeans(points, 32, 8, torch.Generator().manual_seed(7))
    b = kmeans(points, 32, 8, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    index, _ = nearest(points, a)
    assert index.unique().numel() == 32


def test_error_decreases_with_codebook_size() -> None:
    weight = torch.randn(64, 48, generator=torch.Generator().manual_seed(4))
    errors = [relative_error(weight, VPTQConfig(codebook=k, iterations=15)) for k in (4, 16, 64, 256)]
    assert all(later < earlier for earlier, later in itertools.pairwise(errors))
    assert errors[-1] < 0.5 * errors[0]


def test_residual_codebook_lowers_the_error() -> None:
    weight = torch.randn(64, 48, generator=torch.Generator().manual_seed(5))
    plain = relative_error(weight, VPTQConfig(codebook=64))
    with_residual = relative_error(weight, VPTQConfig(codebook=64, residual=64))
    assert with_residual < 0.8 * plain
    encoded = vptq_encode(weight, VPTQConfig(codebook=64, residual=16))
    assert encoded.residual_codebook is not None and encoded.residual_codebook.shape == (16, 4)


def test_importance_protects_the_weighted_columns() -> None:
    weight = torch.randn(32, 40, generator=torch.Generator().manual_seed(6))
    importance = torch.ones(40)
    importance[:8] = 100.0
    config = VPTQConfig(vector=4, codebook=16, iterations=15)
    plain = vptq_decode(vptq_encode(weight, config))
    weighted = vptq_decode(vptq_encode(weight, config, importance))
    error = lambda decoded: float(((decoded - weight)[:, :8] ** 2).mean())  # noqa: E731
    assert error(weighted) < error(plain)
    with pytest.raises(ValueError):
        vptq_encode(weight, config, torch.ones(39))


def test_indices_are_stored_in_index_bits_and_round_trip() -> None:
    weight = torch.randn(30, 20, generator=torch.Generator().manual_seed(8))
    config = VPTQConfig(vector=3, codebook=20, residual=6)
    encoded = vptq_encode(weight, config)
    streams = encoded.symbol_streams()
    assert streams["indices"][1] == config.index_bits == 5
    assert streams["residual_indices"][1] == config.residual_index_bits == 3
    assert int(streams["indices"][0].max()) < 20 and int(streams["residual_indices"][0].max()) < 6
    n_vectors = 20 * math.ceil(30 / 3)
    assert len(pack_uint(streams["indices"][0], 5)) == math.ceil(n_vectors * 5 / 8)
    unpacked = {name: unpack_uint(pack_uint(v, w), w, v.size) for name, (v, w) in streams.items()}
    rebuilt = VPTQEncoded.from_streams(weight.shape, encoded.params(), unpacked)
    assert torch.equal(vptq_decode(rebuilt), vptq_decode(encoded))


def test_codebook_is_fp16_and_assignment_is_against_it() -> None:
    weight = torch.randn(40, 16, generator=torch.Generator().manual_seed(9))
    encoded = vptq_encode(weight, VPTQConfig(codebook=32))
    assert encoded.codebook.dtype == torch.float16
    best, _ = nearest(to_vectors(weight, 4), encoded.codebook.float())
    assert torch.equal(best, encoded.indices)


def test_bits_per_weight_counts_indices_and_codebooks() -> None:
    config = VPTQConfig(vector=4, codebook=256, residual=16)
    numel = 4096
    expected = (1024 * (8 + 4) + 16 * 4 * (256 + 16)) / numel
    assert config.bits_per_weight(numel) == pytest.approx(expected)


def test_more_vectors_than_codebook_entries_is_not_needed() -> None:
    weight = torch.randn(2, 3, generator=torch.Generator().manual_seed(10))
    decoded = vptq_decode(vptq_encode(weight, VPTQConfig(vector=2, codebook=64)))
    assert torch.allclose(decoded, weight.half().float())


def test_config_rejects_bad_values() -> None:
    for bad in ({"codebook": 1}, {"residual": 1}, {"vector": 0}, {"iterations": -1}):
        with pytest.raises(ValueError):
            VPTQConfig(**bad)


def test_symbol_dtypes_are_unsigned() -> None:
    weight = torch.randn(8, 8, generator=torch.Generator().manual_seed(11))
    encoded = vptq_encode(weight, VPTQConfig(codebook=4))
    values, width = encoded.symbol_streams()["codebook"]
    assert values.dtype == np.uint16 and width == 16
