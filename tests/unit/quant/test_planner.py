"""Planner: per-tensor choice by measured size under a measured quality budget; stages; exact decoding."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest
import torch

from agent_forge.quant.container import RawSpec, decode_container, encode_tensor
from agent_forge.quant.planner import (
    PlannerConfig,
    Quality,
    classify_tensor,
    paired_drop_z,
    plan_compression,
    quality_limit,
    within_budget,
)
from agent_forge.quant.seedlm import SeedLMConfig
from agent_forge.quant.vptq import VPTQConfig

GEN = torch.Generator().manual_seed(0)
INPUTS = torch.randn(256, 32, generator=GEN)
TENSORS = {
    "embed": 0.05 * torch.randn(96, 32, generator=GEN),
    "norm": 1.0 + 0.1 * torch.randn(32, generator=GEN),
    "packed": torch.randint(0, 3, (6, 54), generator=GEN, dtype=torch.uint8),
}
REFERENCE_OUT = (INPUTS * TENSORS["norm"]) @ TENSORS["embed"].T
SEEDLM = SeedLMConfig(lfsr_bits=8)
VPTQ_SMALL = VPTQConfig(codebook=4)
CANDIDATES = {"matrix": [SEEDLM, VPTQ_SMALL]}


def output_error(tensors: Mapping[str, torch.Tensor]) -> float:
    """1 + relative squared error of a linear map's outputs: a real measured quality, 1.0 when exact."""
    out = (INPUTS * tensors["norm"].float()) @ tensors["embed"].float().T
    if not torch.equal(tensors["packed"], TENSORS["packed"]):
        return math.inf
    return 1.0 + float(((out - REFERENCE_OUT) ** 2).mean() / REFERENCE_OUT.var())


def metric_config(max_increase: float) -> PlannerConfig:
    return PlannerConfig(max_increase=max_increase, evaluator_kind="metric", zstd_level=3,
                         min_lossy_numel=1024)


def method_value(spec: object) -> float:
    return output_error({**TENSORS, "embed": encode_tensor("embed", TENSORS["embed"], spec).reconstruction})


def test_classes() -> None:
    assert classify_tensor("e", TENSORS["embed"], 1024) == "matrix"
    assert classify_tensor("n", TENSORS["norm"], 1024) == "small"
    assert classify_tensor("p", TENSORS["packed"], 1024) == "packed"


def test_limit_bounds_perplexity_for_losses_and_the_value_for_metrics() -> None:
    limit = quality_limit(2.0, PlannerConfig(max_increase=0.1))
    assert math.exp(limit) / math.exp(2.0) == pytest.approx(1.1)
    assert quality_limit(2.0, PlannerConfig(max_increase=0.1, evaluator_kind="metric")) == pytest.approx(2.2)


def test_generous_budget_takes_the_smallest_method() -> None:
    result = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(100.0))
    embed = next(d for d in result.decisions if d.name == "embed")
    sizes = [a.stored_bytes for a in embed.attempts]
    assert sizes == sorted(sizes) and embed.attempts[0].accepted
    assert embed.chosen.startswith("vptq")  # 2 bits/weight against SeedLM's 4.5
    assert {d.name: d.chosen for d in result.decisions}["packed"] == "raw"
    assert {d.name: d.chosen for d in result.decisions}["norm"] == "raw"
    assert result.final <= result.limit and result.final > result.baseline


def test_a_budget_between_methods_skips_the_one_that_breaks_it() -> None:
    coarse, fine = method_value(VPTQ_SMALL), method_value(SEEDLM)
    assert fine < coarse
    budget = (fine + coarse) / 2 - 1.0
    result = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(budget))
    embed = next(d for d in result.decisions if d.name == "embed")
    assert [a.accepted for a in embed.attempts] == [False, True]
    assert embed.attempts[0].value == pytest.approx(coarse)
    assert embed.chosen.startswith("seedlm")
    assert result.final == pytest.approx(fine)


def test_zero_budget_keeps_everything_lossless() -> None:
    result = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(0.0))
    assert all(d.chosen == "raw" for d in result.decisions)
    decoded = decode_container(result.compressed.data)
    assert all(torch.equal(decoded[name], TENSORS[name]) for name in TENSORS)
    assert result.final == 1.0


def test_reference_sets_the_budget() -> None:
    result = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(0.5), reference=0.5)
    assert result.limit == pytest.approx(0.75)
    assert all(d.chosen == "raw" for d in result.decisions)


def test_decoded_file_equals_the_in_memory_reconstruction_and_stages_add_up() -> None:
    result = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(100.0), metadata={"k": 1})
    decoded = decode_container(result.compressed.data)
    for name, tensor in result.compressed.reconstruction.items():
        assert torch.equal(decoded[name], tensor)
    original, entropy_only, methods, final = result.stages
    raw_bytes = sum(t.numel() * t.element_size() for t in TENSORS.values())
    assert original.bytes == raw_bytes and original.value == result.baseline
    assert entropy_only.value == result.baseline  # lossless stage measured from its decoded file
    assert methods.bytes < raw_bytes and methods.value == result.final
    assert final.bytes == len(result.compressed.data)
    assert final.ratio == pytest.approx(raw_bytes / final.bytes)
    assert final.value == pytest.approx(output_error(decoded))
    assert final.bytes < entropy_only.bytes < raw_bytes + 4096
    assert result.stage_table().count("\n") == 5


def test_lossless_only_encoding_matches_raw_spec() -> None:
    item = encode_tensor("norm", TENSORS["norm"], RawSpec())
    assert torch.equal(item.reconstruction, TENSORS["norm"]) and item.method == "raw"


def test_planning_is_deterministic_so_a_rerun_writes_the_same_file() -> None:
    first = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(100.0))
    second = plan_compression(TENSORS, output_error, CANDIDATES, metric_config(100.0))
    assert first.compressed.data == second.compressed.data


def test_paired_drop_z_is_mcnemars_statistic() -> None:
    before = [True] * 10 + [False] * 10
    after = [False] * 8 + [True] * 2 + [True] * 2 + [False] * 8  # 8 lost, 2 gained
    assert paired_drop_z(before, after) == pytest.approx(6 / math.sqrt(10))
    assert paired_drop_z(before, before) == 0.0
    with pytest.raises(ValueError, match="same tasks"):
        paired_drop_z(before, after[:-1])


def _quality(correct: list[bool]) -> Quality:
    return Quality(1.0, {"mc": sum(correct) / len(correct)}, {"mc": tuple(correct)})


def test_a_drop_beyond_the_points_fails_only_when_it_is_beyond_the_noise_too() -> None:
    reference = _quality([True] * 40 + [False] * 60)
    churned = _quality([False] * 20 + [True] * 20 + [True] * 14 + [False] * 46)  # 20 lost, 14 gained: z 1.03
    collapsed = _quality([False] * 10 + [True] * 30 + [False] * 60)  # 10 lost, none gained: z 3.16
    gated = PlannerConfig(max_accuracy_drop=0.02, accuracy_drop_z=1.96)
    strict = PlannerConfig(max_accuracy_drop=0.02)
    assert within_budget(churned, 2.0, reference, gated) and not within_budget(churned, 2.0, reference, strict)
    assert not within_budget(collapsed, 2.0, reference, gated)
    without_tasks = Quality(1.0, {"mc": 0.34})  # no per-task results: the points alone decide
    assert not within_budget(without_tasks, 2.0, reference, gated)
