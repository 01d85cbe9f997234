"""Measure per-parameter importance (diagonal Fisher information) for DFS / Fisher merging."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn

LossFn = Callable[[nn.Module, Any], Tensor]


def fisher_importance(model: nn.Module, batches: Iterable[Any], loss_fn: LossFn) -> dict[str, Tensor]:
    """Diagonal empirical Fisher: the mean over ``batches`` of the squared gradient of ``loss_fn``.

    ``loss_fn(model, batch)`` returns a scalar loss on held-out data. The gradient is that of each
    batch's mean loss, so batches of one example give the per-example empirical Fisher; larger batches
    give a cheaper estimate whose common scale cancels in :func:`~agent_forge.merge.selection.dfs` as
    long as every candidate is measured on the same batches. The model runs in eval mode (no dropout)
    and its mode is restored; its ``.grad`` fields are cleared afterwards. Keys are the state-dict keys of
    trainable parameters, tied weights under each of their names; float32 on the parameter's device.
    """
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    sums = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params}
    was_training = model.training
    model.eval()
    count = 0
    try:
        for batch in batches:
            model.zero_grad(set_to_none=True)
            loss_fn(model, batch).backward()
            for name, p in params:
                if p.grad is not None:
                    grad = p.grad.detach().float()
                    sums[name].addcmul_(grad, grad)
            count += 1
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    if count == 0:
        raise ValueError("fisher_importance needs at least one batch")
    return _by_state_dict_key(model, {name: total.div_(count) for name, total in sums.items()})


def _by_state_dict_key(model: nn.Module, fisher: dict[str, Tensor]) -> dict[str, Tensor]:
    """Re-key by state-dict name so tied weights (one parameter, two keys) get a score under both."""
    by_param = {id(p): fisher[name] for name, p in model.named_parameters() if name in fisher}
    return {
        key: by_param[id(value)]
        for key, value in model.state_dict(keep_vars=True).items()
        if id(value) in by_param
    }
