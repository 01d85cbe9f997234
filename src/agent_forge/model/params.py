"""Exact parameter counts per module family (stored with every model's metadata)."""

from __future__ import annotations

from torch import nn

FAMILIES = ("embedding", "attention", "mlp", "memory", "gate", "trm", "act", "norm")
_ROOT_FAMILIES = (
    ("model.embed_tokens.", "embedding"),
    ("trm.", "trm"),
    ("act_head.", "act"),
    ("lm_head.", "head"),
)
_LAYER_FAMILIES = ((".attn.", "attention"), (".mlp.", "mlp"), (".memory.", "memory"), (".gate.", "gate"))


def family_of(name: str, norm_names: set[str]) -> str:
    """The family of one named parameter; every RMSNorm weight counts as `norm`."""
    if name in norm_names:
        return "norm"
    for prefix, family in _ROOT_FAMILIES:
        if name.startswith(prefix):
            return family
    for fragment, family in _LAYER_FAMILIES:
        if fragment in name:
            return family
    raise ValueError(f"parameter {name} belongs to no known family")


def count_param_families(model: nn.Module) -> dict[str, int]:
    """Counts per family over model.named_parameters() (shared tensors once, so tied heads count once).

    A separate `head` family appears only when the output head is not tied to the embedding.
    """
    norm_names = {
        f"{module_name}.{param_name}" if module_name else param_name
        for module_name, module in model.named_modules()
        if isinstance(module, nn.RMSNorm)
        for param_name, _ in module.named_parameters(recurse=False)
    }
    counts = dict.fromkeys(FAMILIES, 0)
    for name, param in model.named_parameters():
        family = family_of(name, norm_names)
        counts[family] = counts.get(family, 0) + param.numel()
    return counts
