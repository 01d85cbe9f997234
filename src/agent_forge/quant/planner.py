"""Phase 8's choice of a compression method per tensor, by measured size and measured quality.

Greedy, largest tensor first: every candidate method of the tensor's class is encoded and its stored size
(after the entropy stage) measured; candidates are then tried from the smallest up, each by evaluating the
model with that tensor replaced by its reconstruction on top of the choices already kept. The first one
whose measured quality stays within the budget is kept; if none does, the tensor stays lossless (entropy
coding only). Quality is whatever the caller's ``evaluate(tensors)`` measures, so the planner loads no model
and knows no data: a number (lower is better: a loss or a metric), or a :class:`Quality`, that number with
accuracies per kind, when the budget also bounds how many points each kind may lose. The result carries the
container bytes and a per-stage table.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from torch import Tensor

from agent_forge.quant.container import (
    CompressedModel,
    CompressionPlan,
    EncodedTensor,
    MethodSpec,
    RawSpec,
    assemble,
    decode_container,
    describe,
    encode_tensor,
)
from agent_forge.quant.entropy import DEFAULT_CODECS


@dataclass(frozen=True)
class Quality:
    """One measurement: ``value`` (lower is better) and accuracy per kind (higher is better)."""

    value: float
    accuracy: Mapping[str, float] = field(default_factory=dict)
    correct: Mapping[str, tuple[bool, ...]] = field(default_factory=dict)  # per kind, per task in a fixed order


Evaluator = Callable[[Mapping[str, Tensor]], "float | Quality"]
Classifier = Callable[[str, Tensor], str]


def as_quality(measured: float | Quality) -> Quality:
    return measured if isinstance(measured, Quality) else Quality(float(measured))


@dataclass(frozen=True)
class PlannerConfig:
    """Quality budget and entropy settings.

    ``evaluator_kind="loss"``: ``evaluate`` returns a mean cross-entropy in nats and the budget bounds the
    perplexity ``exp(loss)``; ``"metric"``: the budget bounds the returned figure itself.
    ``max_accuracy_drop``: every kind's accuracy may fall at most this much (absolute) below the reference's.
    ``accuracy_drop_z``: with per-task results on both sides, a larger drop fails only when it is also
    beyond the noise of the paired comparison (McNemar's statistic over the tasks one side got right and
    the other wrong above this z): answers of a kind at chance flip both ways under any perturbation.
    """

    max_increase: float = 0.10
    evaluator_kind: Literal["loss", "metric"] = "loss"
    zstd_level: int = 19
    codecs: tuple[str, ...] = DEFAULT_CODECS
    min_lossy_numel: int = 4096
    max_accuracy_drop: float | None = None
    accuracy_drop_z: float | None = None


def classify_tensor(name: str, tensor: Tensor, min_lossy_numel: int = 4096) -> str:
    """``matrix`` (float, 2-D+, big enough for lossy coding), ``small`` (other float) or ``packed`` (ints)."""
    if not tensor.is_floating_point():
        return "packed"
    return "matrix" if tensor.dim() >= 2 and tensor.numel() >= min_lossy_numel else "small"


def quality_limit(baseline: float, config: PlannerConfig) -> float:
    """The largest evaluator value the budget allows."""
    if config.evaluator_kind == "loss":
        return baseline + math.log1p(config.max_increase)
    return baseline + abs(baseline) * config.max_increase


def within_budget(measured: Quality, limit: float, reference: Quality, config: PlannerConfig) -> bool:
    """Is ``measured`` inside the budget: value at most ``limit`` and, when the budget bounds accuracy,
    every kind of the reference within ``max_accuracy_drop`` of it (a kind not measured fails)?"""
    if not measured.value <= limit:
        return False
    if config.max_accuracy_drop is None:
        return True
    floor = {kind: value - config.max_accuracy_drop for kind, value in reference.accuracy.items()}
    return all(measured.accuracy.get(kind, -math.inf) >= low - 1e-12 or _drop_within_noise(kind, measured,
                                                                                         reference, config)
               for kind, low in floor.items())


def paired_drop_z(before: Sequence[bool], after: Sequence[bool]) -> float:
    """McNemar's statistic of a drop in accuracy on the same tasks: (lost - gained) / sqrt(lost + gained),
    0 when no task changed (McNemar 1947; positive: more tasks lost than gained)."""
    if len(before) != len(after):
        raise ValueError(f"paired results need the same tasks: {len(before)} against {len(after)}")
    lost = sum(1 for was, now in zip(before, after, strict=True) if was and not now)
    gained = sum(1 for was, now in zip(before, after, strict=True) if now and not was)
    return (lost - gained) / math.sqrt(lost + gained) if lost + gained else 0.0


def _drop_within_noise(kind: str, measured: Quality, reference: Quality, config: PlannerConfig) -> bool:
    if config.accuracy_drop_z is None or kind not in measured.correct or kind not in reference.correct:
        return False
    return paired_drop_z(reference.correct[kind], measured.correct[kind]) <= config.accuracy_drop_z


@dataclass(frozen=True)
class Attempt:
    method: str
    stored_bytes: int
    value: float | None  # None: not evaluated (no smaller than lossless, or a smaller one was kept)
    accepted: bool
    encode_seconds: float
    accuracy: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorDecision:
    name: str
    tensor_class: str
    chosen: str
    original_bytes: int
    stored_bytes: int
    bits_per_weight: float
    attempts: tuple[Attempt, ...]


@dataclass(frozen=True)
class StageRow:
    stage: str
    bytes: int
    ratio: float
    value: float
    encode_seconds: float
    decode_seconds: float
    accuracy: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PlanResult:
    plan: CompressionPlan
    baseline: float
    limit: float
    final: float
    reference: Quality
    final_quality: Quality
    compressed: CompressedModel
    decisions: tuple[TensorDecision, ...]
    stages: tuple[StageRow, ...]
    lossless_stream_bytes: int = 0  # the entropy-only stage's streams, without the container's header

    @property
    def stream_bytes(self) -> int:
        """The written file's streams, without the container's header (metadata, lengths, checksums)."""
        return sum(item.stored_bytes for item in self.compressed.tensors.values())

    def stage_table(self) -> str:
        """The per-stage table as Markdown."""
        lines = ["| stage | bytes | ratio | value | encode s | decode s |", "|---|---:|---:|---:|---:|---:|"]
        for row in self.stages:
            lines.append(
                f"| {row.stage} | {row.bytes} | {row.ratio:.2f} | {row.value:.5g} | "
                f"{row.encode_seconds:.3f} | {row.decode_seconds:.3f} |"
            )
        return "\n".join(lines)


@dataclass
class _Search:
    """What the greedy pass needs at every step."""

    state: dict[str, Tensor]
    quality: Quality
    limit: float
    reference: Quality
    evaluate: Evaluator
    config: PlannerConfig
    importance: Mapping[str, Tensor]

    def measure(self, tensors: Mapping[str, Tensor]) -> Quality:
        return as_quality(self.evaluate(tensors))

    def encode(self, name: str, tensor: Tensor, spec: MethodSpec) -> EncodedTensor:
        cfg = self.config
        return encode_tensor(name, tensor, spec, cfg.zstd_level, cfg.codecs, self.importance.get(name))


def _encode_seconds(item: EncodedTensor) -> float:
    return item.method_seconds + item.entropy_seconds


def _choose(
    search: _Search, name: str, tensor: Tensor, specs: Sequence[MethodSpec], tensor_class: str
) -> tuple[MethodSpec, EncodedTensor, EncodedTensor, TensorDecision]:
    """Try the candidates smallest-first and keep the first within budget; else stay lossless.

    Returns the chosen spec, its encoding, the lossless encoding and the decision record.
    """
    lossless = search.encode(name, tensor, RawSpec())
    trials = sorted(((search.encode(name, tensor, s), s) for s in specs), key=lambda t: t[0].stored_bytes)
    attempts: list[Attempt] = []
    chosen, chosen_spec = lossless, RawSpec()
    for encoded, spec in trials:
        measured = None
        if encoded.stored_bytes < lossless.stored_bytes and isinstance(chosen_spec, RawSpec):
            measured = search.measure({**search.state, name: encoded.reconstruction})
        accepted = measured is not None and within_budget(measured, search.limit, search.reference, search.config)
        attempts.append(Attempt(describe(spec), encoded.stored_bytes, None if measured is None else measured.value,
                                accepted, _encode_seconds(encoded), {} if measured is None else measured.accuracy))
        if accepted and measured is not None:
            chosen, chosen_spec = encoded, spec
            search.state[name], search.quality = encoded.reconstruction, measured
    decision = TensorDecision(
        name=name,
        tensor_class=tensor_class,
        chosen=describe(chosen_spec),
        original_bytes=chosen.original_bytes,
        stored_bytes=chosen.stored_bytes,
        bits_per_weight=8.0 * chosen.stored_bytes / max(1, tensor.numel()),
        attempts=tuple(attempts),
    )
    return chosen_spec, chosen, lossless, decision


def _container_stage(
    stage: str, items: Sequence[EncodedTensor], search: _Search, original: int, metadata: Mapping | None
) -> tuple[StageRow, bytes]:
    """Assemble a container, decode it back and evaluate what came out (the figure a user would get)."""
    start = time.perf_counter()
    data = assemble(items, metadata)
    assemble_seconds = time.perf_counter() - start
    start = time.perf_counter()
    decoded = decode_container(data)
    decode_seconds = time.perf_counter() - start
    encode_seconds = sum(_encode_seconds(item) for item in items) + assemble_seconds
    measured = search.measure(decoded)
    row = StageRow(stage, len(data), original / len(data), measured.value, encode_seconds, decode_seconds,
                   measured.accuracy)
    return row, data


def _stages(
    chosen: Sequence[EncodedTensor],
    lossless: Sequence[EncodedTensor],
    search: _Search,
    baseline: Quality,
    metadata: Mapping | None,
) -> tuple[tuple[StageRow, ...], bytes]:
    original = sum(item.original_bytes for item in lossless)
    entropy_row, _ = _container_stage("entropy only", lossless, search, original, metadata)
    packed = sum(item.packed_bytes for item in chosen)
    methods_row = StageRow(
        "methods, before entropy",
        packed,
        original / max(1, packed),
        search.quality.value,
        sum(item.method_seconds for item in chosen),
        sum(item.decode_seconds for item in chosen),
        search.quality.accuracy,
    )
    final_row, data = _container_stage("methods + entropy", chosen, search, original, metadata)
    original_row = StageRow("original", original, 1.0, baseline.value, 0.0, 0.0, baseline.accuracy)
    return (original_row, entropy_row, methods_row, final_row), data


def plan_compression(
    tensors: Mapping[str, Tensor],
    evaluate: Evaluator,
    candidates: Mapping[str, Sequence[MethodSpec]],
    config: PlannerConfig | None = None,
    classify: Classifier | None = None,
    importance: Mapping[str, Tensor] | None = None,
    reference: float | Quality | None = None,
    metadata: Mapping | None = None,
) -> PlanResult:
    """Choose a method per tensor under the quality budget and build the container.

    ``candidates`` maps a tensor class (see :func:`classify_tensor`, or the caller's ``classify``) to the
    lossy methods worth trying; every tensor is entropy coded whatever its method. ``importance`` holds
    weights by tensor name for the methods that use them (see ``compress_tensors``). The budget is
    measured from ``reference`` (e.g. the uncompressed model's quality, when ``tensors`` are already a step
    away from it), else from ``tensors``. ``metadata`` is stored in the container's header.
    """
    cfg = config or PlannerConfig()
    classify = classify or (lambda name, tensor: classify_tensor(name, tensor, cfg.min_lossy_numel))
    baseline = as_quality(evaluate(tensors))
    anchor = baseline if reference is None else as_quality(reference)
    limit = quality_limit(anchor.value, cfg)
    search = _Search(dict(tensors), baseline, limit, anchor, evaluate, cfg, importance or {})
    picked: dict[str, tuple[MethodSpec, EncodedTensor, EncodedTensor, TensorDecision]] = {}
    for name in sorted(tensors, key=lambda n: -tensors[n].numel() * tensors[n].element_size()):
        tensor_class = classify(name, tensors[name])
        specs = candidates.get(tensor_class, ())
        picked[name] = _choose(search, name, tensors[name], specs, tensor_class)
    chosen = [picked[name][1] for name in tensors]
    stages, data = _stages(chosen, [picked[name][2] for name in tensors], search, baseline, metadata)
    methods = {name: p[0] for name, p in picked.items() if not isinstance(p[0], RawSpec)}
    return PlanResult(
        plan=CompressionPlan(methods, cfg.zstd_level, cfg.codecs),
        baseline=baseline.value,
        limit=search.limit,
        final=stages[-1].value,
        reference=anchor,
        final_quality=Quality(stages[-1].value, stages[-1].accuracy),
        compressed=CompressedModel(data, {item.name: item for item in chosen}),
        decisions=tuple(picked[name][3] for name in picked),
        stages=stages,
        lossless_stream_bytes=sum(picked[name][2].stored_bytes for name in tensors),
    )
