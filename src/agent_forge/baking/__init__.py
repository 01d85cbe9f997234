"""Prompt baking (Bhargava et al. 2024): train the weights so the unprompted model acts as if prompted."""

from agent_forge.baking.bake import (
    BakeData,
    prepare_bake,
    refreeze,
    release_ternary,
    schedule_indices,
    ternary_flip_share,
    ternary_values,
)
from agent_forge.baking.data import (
    BakeSet,
    Piece,
    References,
    batch_kl,
    make_batch,
    mean_kl,
    sample_bake_set,
    teacher_logprobs,
    use_references,
)
from agent_forge.baking.lora import LoRAConfig, LoRAHandle, LoRALinear, apply_lora, lora_targets, merge_lora
from agent_forge.baking.loss import per_token_kl, token_kl
from agent_forge.baking.persona import bag_cosine, marker_share, mean_pair_cosine
from agent_forge.baking.prompts import BakePrompt, load_prompt, parse_prompt

__all__ = [
    "BakeData", "BakePrompt", "BakeSet", "LoRAConfig", "LoRAHandle", "LoRALinear", "Piece", "References",
    "apply_lora", "bag_cosine", "batch_kl", "load_prompt", "lora_targets", "make_batch", "marker_share", "mean_kl",
    "mean_pair_cosine", "merge_lora", "parse_prompt", "per_token_kl", "prepare_bake", "refreeze", "release_ternary",
    "sample_bake_set", "schedule_indices", "teacher_logprobs", "ternary_flip_share", "ternary_values", "token_kl",
    "use_references",
]  # fmt: skip
