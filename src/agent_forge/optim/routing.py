"""Which update each parameter gets: Muon for hidden weight matrices, AdamW for everything else.

Muon's orthogonalised step suits matrices that map one hidden space to another. It does not suit tables
of independent rows (embeddings), the output head (its rows are per-token logits, as in Jordan 2024 and
Moonlight), vectors (biases, norm gains) or tensors of other ranks, so those go to AdamW.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

from torch import Tensor

Route = Literal["muon", "adamw"]
ROUTES: tuple[Route, ...] = ("muon", "adamw")
ADAMW_NAME_MARKS: tuple[str, ...] = ("embed", "lm_head")


def route_parameter(name: str, param: Tensor) -> Route:
    """The routing rule, in order.

    1. ``param.ndim != 2`` -> "adamw" (biases, norm gains, scalars, conv kernels);
    2. a name containing "embed" or "lm_head" -> "adamw" (embedding tables, the output head);
    3. a 2-D matrix with a dimension of 1 -> "adamw" (a vector stored as a matrix, e.g. a one-output
       halting head, where orthogonalisation would only normalise it);
    4. any other 2-D matrix -> "muon".
    """
    if param.ndim != 2:
        return "adamw"
    if any(mark in name for mark in ADAMW_NAME_MARKS):
        return "adamw"
    if min(param.shape) == 1:
        return "adamw"
    return "muon"


def route_named_parameters(
    named_params: Iterable[tuple[str, Tensor]],
    overrides: Mapping[str, Route] | None = None,
) -> dict[str, tuple[Route, Tensor]]:
    """Route every trainable parameter; ``overrides`` (name -> route) wins over the rule.

    Frozen parameters (``requires_grad=False``) are left out: they never receive an update. A name that
    appears twice, an override naming no parameter, or Muon asked for a tensor that is not 2-D raise.
    """
    overrides = dict(overrides or {})
    routed: dict[str, tuple[Route, Tensor]] = {}
    seen: set[str] = set()
    for item in named_params:
        name, param = _as_named_pair(item)
        if name in seen:
            raise ValueError(f"parameter name {name!r} appears twice")
        seen.add(name)
        route = overrides.pop(name, None) or route_parameter(name, param)
        if route not in ROUTES:
            raise ValueError(f"route for {name!r} is {route!r}; it must be one of {ROUTES}")
        if route == "muon" and param.ndim != 2:
            raise ValueError(f"{name!r} has shape {tuple(param.shape)}; Muon only updates 2-D matrices")
        if param.requires_grad:
            routed[name] = (route, param)
    if overrides:
        raise ValueError(f"routing overrides name unknown parameters: {sorted(overrides)}")
    return routed


def _as_named_pair(item: object) -> tuple[str, Tensor]:
    """Names are part of the rule, so bare tensors (``model.parameters()``) are refused, not guessed."""
    if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
        raise TypeError("MuonGrokfast needs (name, parameter) pairs: pass model.named_parameters()")
    name, param = item
    if not isinstance(param, Tensor):
        raise TypeError(f"{name!r} is a {type(param).__name__}, not a tensor")
    return name, param
