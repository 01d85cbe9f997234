"""Composite fitness of Phase 2 (spec 2.2.5) from measured, deterministic model behaviour (D10).

Four components, each a ratio to a reference measurement (Phase 2 uses the mean of the Phase 1
specialists), so a model as good as the reference scores 1 on each and, with the spec's weights adding
up to 1, has fitness about 1:

- perplexity: ``ref_ppl / ppl`` on the held-out LM rows (the spec's ``1 / perplexity``, normalised);
- accuracy: ``(acc + 1/n) / (ref_acc + 1/n)``, teacher-forced exact match on the n held-out tasks; the
  one-example smoothing keeps the ratio finite when the reference solves nothing;
- speed: ``ref_steps / steps``, where ``steps`` is the mean number of TRM recursion steps a position
  uses before it halts on the held-out data (every real token of the LM rows, the answer positions of
  the tasks: the only task positions whose logits are formed). Inference exits early, so compute per
  token is proportional to it. Wall-clock throughput is not used: timing noise would reorder the population;
- memory: ``ref_bytes / bytes`` of the model's unique parameters and buffers. Merges of one architecture
  all have the same size, so in Phase 2 this component is 1 for every candidate; it is kept because the
  spec weighs it and it moves as soon as a candidate's size does.

Everything is counted, not timed: the same weights on the same held-out set give the same fitness.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from agent_forge.eval.heldout import HeldoutSet, _accepts_use_cache, accepts_logits_mask, evaluate

COMPONENTS = ("perplexity", "accuracy", "speed", "memory")


@dataclass(frozen=True)
class CompositeWeights:
    """Weights of the four components; the spec's values by default."""

    perplexity: float = 0.4
    accuracy: float = 0.3
    speed: float = 0.2
    memory: float = 0.1

    def __post_init__(self) -> None:
        values = [getattr(self, name) for name in COMPONENTS]
        if min(values) < 0 or sum(values) <= 0:
            raise ValueError(f"fitness weights must be non-negative with a positive sum, got {values}")


DEFAULT_WEIGHTS = CompositeWeights()


@dataclass(frozen=True)
class FitnessMeasurement:
    """The raw, measured quantities behind a fitness value."""

    loss: float  # mean held-out cross-entropy per token, nats
    perplexity: float
    accuracy: float
    n_examples: int  # tasks behind ``accuracy``
    mean_steps: float  # recursion steps per real token, 1..T_max
    memory_bytes: int

    @classmethod
    def mean(cls, measurements: Sequence[FitnessMeasurement]) -> FitnessMeasurement:
        """Reference of a group: the mean of each quantity; perplexity as exp of the mean loss."""
        if not measurements:
            raise ValueError("a reference needs at least one measurement")
        count = len(measurements)
        loss = math.fsum(m.loss for m in measurements) / count
        return cls(
            loss=loss,
            perplexity=math.exp(loss) if loss < 700 else math.inf,
            accuracy=math.fsum(m.accuracy for m in measurements) / count,
            n_examples=measurements[0].n_examples,
            mean_steps=math.fsum(m.mean_steps for m in measurements) / count,
            memory_bytes=round(sum(m.memory_bytes for m in measurements) / count),
        )

    def to_dict(self) -> dict[str, float]:
        return {key: float(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Fitness:
    """A composite fitness value, its normalised components and the measurement behind it."""

    value: float
    components: dict[str, float]
    measurement: FitnessMeasurement

    def to_dict(self) -> dict[str, float]:
        """Flat figures: ``fitness``, ``<component>_score`` and the raw measurement."""
        scores = {f"{name}_score": value for name, value in self.components.items()}
        return {"fitness": self.value, **scores, **self.measurement.to_dict()}


class _HaltTally(nn.Module):
    """Passes calls through to a model and counts the recursion steps its real tokens use."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model
        self.passes_use_cache = _accepts_use_cache(model)
        self.accepts_logits_mask = accepts_logits_mask(model)
        self.steps = 0
        self.positions = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                **kwargs: Any) -> Any:
        if not self.passes_use_cache:
            kwargs.pop("use_cache", None)
        output = self.inner(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        selected = kwargs.get("logits_mask")
        if selected is not None:  # only the selected positions ran the recursion
            mask = torch.ones(int(selected.sum()), dtype=torch.long, device=mask.device)
        halt = getattr(output, "halt_steps", None)
        used = mask if halt is None else (halt.to(mask.device) + 1) * mask  # no recursion: one step each
        self.steps += int(used.sum())
        self.positions += int(mask.sum())
        return output


def state_bytes(model: nn.Module) -> int:
    """Bytes of the model's unique parameters and buffers (tied weights counted once)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


def measure(model: nn.Module, heldout: HeldoutSet, batch_size: int = 32) -> FitnessMeasurement:
    """Held-out loss, perplexity, accuracy, mean recursion depth and size of ``model`` (one pass each)."""
    if heldout.n_examples == 0 or not heldout.lm_rows:
        raise ValueError("fitness needs held-out LM rows and task examples")
    tally = _HaltTally(model)
    result = evaluate(tally, heldout, batch_size)
    return FitnessMeasurement(
        loss=result.loss,
        perplexity=result.perplexity,
        accuracy=result.accuracy,
        n_examples=result.n_examples,
        mean_steps=tally.steps / max(tally.positions, 1),
        memory_bytes=state_bytes(model),
    )


def _ratio(reference: float, value: float) -> float:
    """``reference / value`` for lower-is-better quantities; a broken (inf/NaN) value scores 0."""
    if not math.isfinite(value) or value <= 0:
        return 0.0
    return reference / value


def composite_fitness(
    measurement: FitnessMeasurement,
    reference: FitnessMeasurement,
    weights: CompositeWeights = DEFAULT_WEIGHTS,
) -> Fitness:
    """Weighted sum of the four normalised components (module docstring)."""
    smoothing = 1.0 / max(measurement.n_examples, 1)
    accuracy = measurement.accuracy if math.isfinite(measurement.accuracy) else 0.0
    components = {
        "perplexity": _ratio(reference.perplexity, measurement.perplexity),
        "accuracy": (accuracy + smoothing) / (reference.accuracy + smoothing),
        "speed": _ratio(reference.mean_steps, measurement.mean_steps),
        "memory": _ratio(float(reference.memory_bytes), float(measurement.memory_bytes)),
    }
    value = math.fsum(getattr(weights, name) * components[name] for name in COMPONENTS)
    return Fitness(value, components, measurement)


def evaluate_fitness(
    model: nn.Module,
    heldout: HeldoutSet,
    reference: FitnessMeasurement,
    weights: CompositeWeights = DEFAULT_WEIGHTS,
    batch_size: int = 32,
) -> Fitness:
    """Measure ``model`` and score it against ``reference``."""
    return composite_fitness(measure(model, heldout, batch_size), reference, weights)


def heldout_subset(
    heldout: HeldoutSet, lm_sequences: int | None = None, examples: int | None = None
) -> HeldoutSet:
    """The first ``lm_sequences`` LM rows and first ``examples`` tasks of ``heldout`` (None: all).

    Fitness is measured hundreds of times in Phase 2, so a preset can score candidates on a fixed
    prefix of the shared held-out set. ``lm_bytes`` is scaled by the share of predicted tokens kept (an
    estimate: bits/byte is not part of fitness, and the D6 records use the whole set).
    """
    rows = heldout.lm_rows[:lm_sequences]
    keep = slice(0, examples)
    share = sum(len(r) - 1 for r in rows) / max(sum(len(r) - 1 for r in heldout.lm_rows), 1)
    return HeldoutSet(
        lm_rows=[*rows],
        lm_bytes=round(heldout.lm_bytes * share),
        qa_tokens=heldout.qa_tokens[keep],
        qa_answer_start=heldout.qa_answer_start[keep],
        kinds=heldout.kinds[keep],
        levels=heldout.levels[keep],
        examples=heldout.examples[keep],
        seq_len=heldout.seq_len,
    )
