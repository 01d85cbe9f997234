"""The eight 3-bit merge combos of Phase 2 (spec 2.2.4): interpolate, then task arithmetic, then select.

What each stage receives:

1. Interpolation gets the input ``models`` (3 in Phase 2) and returns one state dict: ``linear`` with
   equal weights (bit0 = 0) or ``slerp_chain`` with equal shares (bit0 = 1).
2. Task arithmetic gets the stage-1 result and ``base`` (the Phase 1 trunk, D2) and sparsifies the
   delta ``stage1 - base``: ``dare`` with ``p = params.dare_drop`` (bit1 = 0) or single-delta
   ``ties`` keeping ``params.ties_keep`` of it (bit1 = 1).
3. Selection gets ``candidates = [stage2, *models]`` (stage-2 result first) and returns the final state
   dict: ``frankenmerge`` by fitness (bit2 = 0) or ``dfs`` by importance (bit2 = 1).

The bits are those of the spec's "Binary Encoding" and its code (bit0 = combo_id & 1 picks the
interpolation). The spec's table lists the binary string left to right as stages 1-2-3 and so swaps bit0
and bit2 (its combo 1 is Linear/DARE/DFS); we follow the bit definition, so combo 1 is SLERP/DARE/
FrankenMerge. :func:`describe_combo` names the stages of every id.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from agent_forge.merge.interpolate import DEFAULT_DOT_THRESHOLD, linear, slerp_chain
from agent_forge.merge.selection import FrankenMode, LayerKeyFn, default_layer_key, dfs, frankenmerge
from agent_forge.merge.state import StateDict, StateLike, check_compatible
from agent_forge.merge.task_arithmetic import dare, ties

FitnessInput = Sequence[float] | Callable[[StateDict], float]
ImportanceInput = Sequence[Mapping[str, Tensor]] | Callable[[StateDict], Mapping[str, Tensor]]
COMBO_COUNT = 8


@dataclass(frozen=True)
class MergeParams:
    """Knobs of the combo stages; defaults are the spec's (DARE drops 90%, TIES keeps the top 20%)."""

    dare_drop: float = 0.9
    ties_keep: float = 0.2
    ties_scale: float = 1.0
    slerp_dot_threshold: float = DEFAULT_DOT_THRESHOLD
    frankenmerge_mode: FrankenMode = "best"
    layer_key_fn: LayerKeyFn = field(default=default_layer_key)

    def __post_init__(self) -> None:
        if not 0.0 <= self.dare_drop < 1.0:
            raise ValueError(f"dare_drop must lie in [0, 1), got {self.dare_drop}")
        if not 0.0 < self.ties_keep <= 1.0:
            raise ValueError(f"ties_keep must lie in (0, 1], got {self.ties_keep}")
        if not 0.0 <= self.slerp_dot_threshold <= 1.0:
            raise ValueError(f"slerp_dot_threshold must lie in [0, 1], got {self.slerp_dot_threshold}")
        if self.frankenmerge_mode not in ("best", "weighted"):
            raise ValueError(f"frankenmerge_mode must be 'best' or 'weighted', got {self.frankenmerge_mode}")


@dataclass(frozen=True)
class MergeCombo:
    """The three techniques one combo id selects."""

    combo_id: int
    interpolation: str  # "linear" | "slerp"
    task_arithmetic: str  # "dare" | "ties"
    selection: str  # "frankenmerge" | "dfs"

    @property
    def binary(self) -> str:
        """The id as bits bit2 bit1 bit0, e.g. "101" for 5."""
        return format(self.combo_id, "03b")


def decode_combo(combo_id: int) -> MergeCombo:
    """Decode a combo id 0-7: bit0 interpolation, bit1 task arithmetic, bit2 selection."""
    if not isinstance(combo_id, int) or not 0 <= combo_id < COMBO_COUNT:
        raise ValueError(f"combo_id must be an integer 0-7, got {combo_id!r}")
    return MergeCombo(
        combo_id=combo_id,
        interpolation=("linear", "slerp")[combo_id & 1],
        task_arithmetic=("dare", "ties")[(combo_id >> 1) & 1],
        selection=("frankenmerge", "dfs")[(combo_id >> 2) & 1],
    )


_PRETTY = {"linear": "Linear", "slerp": "SLERP", "dare": "DARE", "ties": "TIES"}
_PRETTY |= {"frankenmerge": "FrankenMerge", "dfs": "DFS"}


def describe_combo(combo_id: int) -> str:
    """Human-readable combo, e.g. ``"5 (101): SLERP -> DARE -> DFS"``."""
    combo = decode_combo(combo_id)
    stages = (combo.interpolation, combo.task_arithmetic, combo.selection)
    return f"{combo_id} ({combo.binary}): " + " -> ".join(_PRETTY[s] for s in stages)


def apply_merge_combo(
    models: Sequence[StateLike],
    combo_id: int,
    base: StateLike,
    *,
    fitness: FitnessInput | None = None,
    importance: ImportanceInput | None = None,
    generator: torch.Generator | None = None,
    params: MergeParams = MergeParams(),
) -> StateDict:
    """Merge ``models`` (sharing the trunk ``base``) with combo ``combo_id``; see the module docstring.

    ``fitness`` (FrankenMerge combos) and ``importance`` (DFS combos) describe the stage-3 candidates
    ``[stage2, *models]``: either one value per candidate in that order, or a callable that measures a
    candidate state dict (the caller loads it into a model and evaluates it; merge code stays pure).
    ``generator`` drives DARE's mask and weighted FrankenMerge; both draw from it in that order.
    """
    combo = decode_combo(combo_id)
    _check_inputs(models, base, combo, fitness, importance, generator, params)
    stage1 = _interpolate(models, combo, params)
    if combo.task_arithmetic == "dare":
        stage2 = dare(stage1, base, params.dare_drop, generator)
    else:
        stage2 = ties(stage1, base, params.ties_keep, scale=params.ties_scale)
    del stage1
    candidates = [stage2, *models]
    if combo.selection == "frankenmerge":
        scores = _per_candidate(fitness, candidates, "fitness")
        return frankenmerge(candidates, scores, params.layer_key_fn, generator, mode=params.frankenmerge_mode)
    return dfs(candidates, _per_candidate(importance, candidates, "importance"))


def _interpolate(models: Sequence[StateLike], combo: MergeCombo, params: MergeParams) -> StateDict:
    if combo.interpolation == "linear":
        return linear(models)
    return slerp_chain(models, params.slerp_dot_threshold)


def _per_candidate(values: FitnessInput | ImportanceInput, candidates: list[StateDict], what: str) -> list:
    """Evaluate a callable on each candidate, or check a precomputed list has one value per candidate."""
    if callable(values):
        return [values(candidate) for candidate in candidates]
    if len(values) != len(candidates):
        raise ValueError(
            f"{what} needs one value per stage-3 candidate [stage2, *models] = {len(candidates)}, "
            f"got {len(values)}"
        )
    return list(values)


def _check_inputs(
    models: Sequence[StateLike],
    base: StateLike,
    combo: MergeCombo,
    fitness: FitnessInput | None,
    importance: ImportanceInput | None,
    generator: torch.Generator | None,
    params: MergeParams,
) -> None:
    """Fail before any tensor work when an input the combo needs is missing."""
    if len(models) < 2:
        raise ValueError(f"a merge combo needs at least two models, got {len(models)}")
    check_compatible([*models, base])
    if combo.selection == "frankenmerge" and fitness is None:
        raise ValueError(f"{describe_combo(combo.combo_id)} needs fitness for FrankenMerge")
    if combo.selection == "dfs" and importance is None:
        raise ValueError(f"{describe_combo(combo.combo_id)} needs importance (diagonal Fisher) for DFS")
    random_dare = combo.task_arithmetic == "dare" and params.dare_drop > 0
    random_franken = combo.selection == "frankenmerge" and params.frankenmerge_mode == "weighted"
    if (random_dare or random_franken) and generator is None:
        raise ValueError(f"{describe_combo(combo.combo_id)} is random: pass a seeded torch.Generator")
