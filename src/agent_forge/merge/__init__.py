"""Merge methods for Phase 2 (EvoMerge): pure functions on state dicts (``dict[str, Tensor]``).

Only :mod:`agent_forge.merge.importance` touches a model (to measure the Fisher information DFS uses).
"""

from agent_forge.merge.combo import (
    MergeCombo,
    MergeParams,
    apply_merge_combo,
    decode_combo,
    describe_combo,
)
from agent_forge.merge.importance import fisher_importance
from agent_forge.merge.interpolate import linear, slerp, slerp_chain, slerp_tensor
from agent_forge.merge.mutation import mutate
from agent_forge.merge.selection import default_layer_key, dfs, frankenmerge, plan_layer_sources
from agent_forge.merge.state import StateDict
from agent_forge.merge.task_arithmetic import dare, ties

__all__ = [
    "MergeCombo",
    "MergeParams",
    "StateDict",
    "apply_merge_combo",
    "dare",
    "decode_combo",
    "default_layer_key",
    "describe_combo",
    "dfs",
    "fisher_importance",
    "frankenmerge",
    "linear",
    "mutate",
    "plan_layer_sources",
    "slerp",
    "slerp_chain",
    "slerp_tensor",
    "ties",
]
