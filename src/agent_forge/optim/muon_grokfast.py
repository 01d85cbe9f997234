"""MuonGrokfast: Grokfast prefilter -> Muon (hidden matrices) or AdamW (the rest) -> QK-clip.

One optimizer object so a training loop, a scheduler and a checkpoint see a single thing. Each parameter
group carries its ``kind`` ("muon" or "adamw") and its own hyperparameters, so ``LambdaLR`` and friends work
unchanged and ``state_dict()`` holds everything needed to continue bit for bit: momentum, Adam moments,
Grokfast EMAs and step counts. The step draws no random numbers, so identical gradients on every rank give
identical weights on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from agent_forge.optim.config import MuGrokConfig
from agent_forge.optim.grokfast import grokfast_filter
from agent_forge.optim.newton_schulz import DTYPES
from agent_forge.optim.qk_clip import QKClipTarget, apply_qk_clip, check_target
from agent_forge.optim.routing import Route, route_named_parameters
from agent_forge.optim.updates import AdamWHyper, MuonHyper, adamw_update_, muon_update_stack_


class MuonGrokfast(torch.optim.Optimizer):
    """Muon x Grokfast with an AdamW fallback and QK-clip (see the package docs and decision D11).

    Args:
        named_params: ``model.named_parameters()``; names drive the routing (see ``route_parameter``).
        config: hyperparameters; ``MuGrokConfig.from_phase(n)`` gives the D11 preset of a phase.
        qk_clip_modules: attention modules following the QK-clip interface, clipped after every step.
        route_overrides: name -> "muon"/"adamw", for parameters the caller wants routed differently.

    ``routing`` maps each trained parameter's name to its route. ``set_lr_multiplier(f)`` multiplies
    every group's lr by ``f`` on top of whatever a scheduler sets (group key ``lr_multiplier``; not to be
    confused with a config section's ``lr_scale``, which scales the preset, or the trainer's recovery factor).
    """

    def __init__(
        self,
        named_params: Iterable[tuple[str, nn.Parameter]],
        config: MuGrokConfig | None = None,
        qk_clip_modules: Sequence[QKClipTarget] | None = None,
        route_overrides: Mapping[str, Route] | None = None,
    ) -> None:
        self.config = config or MuGrokConfig()
        routed = route_named_parameters(named_params, route_overrides)
        if not routed:
            raise ValueError("MuonGrokfast got no trainable parameters")
        self.routing: dict[str, Route] = {name: route for name, (route, _) in routed.items()}
        super().__init__(_param_groups(routed, self.config), _group_defaults(self.config))
        self.qk_clip_modules: list[QKClipTarget] = list(qk_clip_modules or [])
        for module in self.qk_clip_modules:
            check_target(module)
        self.qk_clip_tau: float | None = self.config.qk_clip_tau
        self._last_clip_count: Tensor = torch.zeros((), dtype=torch.long)

    @property
    def last_qk_clip_count(self) -> int:
        """Heads clipped by the last step, over all modules (reading it syncs with the device)."""
        return int(self._last_clip_count)

    @property
    def lr_multiplier(self) -> float:
        return float(self.param_groups[0]["lr_multiplier"])

    def set_lr_multiplier(self, factor: float) -> None:
        """Set the multiplier on every group's lr; kept in the state dict, untouched by schedulers."""
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"lr multiplier must be a finite number > 0, got {factor!r}")
        for group in self.param_groups:
            group["lr_multiplier"] = float(factor)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """As torch's; a state dict saved before the group key was renamed names it ``lr_scale``."""
        groups = [{("lr_multiplier" if key == "lr_scale" else key): value for key, value in group.items()}
                  for group in state_dict["param_groups"]]
        super().load_state_dict({**state_dict, "param_groups": groups})

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient, then clip the attention modules given."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        if self.qk_clip_modules and self.qk_clip_tau is not None:
            self._last_clip_count = apply_qk_clip(self.qk_clip_modules, self.qk_clip_tau)
        else:
            self._last_clip_count = torch.zeros((), dtype=torch.long)
        return loss

    def _step_group(self, group: dict[str, Any]) -> None:
        lr = group["lr"] * group["lr_multiplier"]
        muon = group["kind"] == "muon"
        hyper = _muon_hyper(group, lr) if muon else _adamw_hyper(group, lr)
        same_shape: dict[torch.Size, list[tuple[Tensor, Tensor]]] = {}
        for param in group["params"]:
            if param.grad is None:
                continue
            if param.grad.is_sparse:
                raise RuntimeError("MuonGrokfast does not support sparse gradients")
            grad = self._prefilter(param.grad, self.state[param], group)
            if muon:
                same_shape.setdefault(param.shape, []).append((param, grad))
            else:
                self._adamw_param(param, grad, self.state[param], hyper)
        for pairs in same_shape.values():  # Muon: one batched Newton-Schulz per shape
            self._muon_params(pairs, hyper)

    @staticmethod
    def _prefilter(grad: Tensor, state: dict[str, Any], group: dict[str, Any]) -> Tensor:
        if not group["grokfast"] or group["grokfast_lambda"] == 0:
            return grad
        filtered, state["grokfast_ema"] = grokfast_filter(
            grad, state.get("grokfast_ema"), group["grokfast_alpha"], group["grokfast_lambda"]
        )
        return filtered

    def _muon_params(self, pairs: list[tuple[Tensor, Tensor]], hyper: MuonHyper) -> None:
        buffers = []
        for param, grad in pairs:
            state = self.state[param]
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            buffers.append(state["momentum_buffer"])
        params, grads = [p for p, _ in pairs], [g for _, g in pairs]
        muon_update_stack_(params, grads, buffers, hyper)

    @staticmethod
    def _adamw_param(param: Tensor, grad: Tensor, state: dict[str, Any], hyper: AdamWHyper) -> None:
        if "exp_avg" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        state["step"] += 1
        adamw_update_(param, grad, state["exp_avg"], state["exp_avg_sq"], state["step"], hyper)


def _group_defaults(config: MuGrokConfig) -> dict[str, Any]:
    """Every hyperparameter lives in the group, so the state dict restores it and schedulers can edit it.

    A group added later without a ``kind`` gets AdamW, the update that is valid for any shape.
    """
    return {
        "kind": "adamw",
        "lr": config.fallback_lr,
        "lr_multiplier": 1.0,
        "weight_decay": config.fallback_weight_decay,
        "grokfast": config.grokfast,
        "grokfast_alpha": config.grokfast_alpha,
        "grokfast_lambda": config.grokfast_lambda,
        "momentum": config.momentum,
        "nesterov": config.nesterov,
        "ns_steps": config.ns_steps,
        "ns_coefficients": tuple(config.ns_coefficients),
        "ns_eps": config.ns_eps,
        "ns_dtype": config.ns_dtype,
        "betas": tuple(config.fallback_betas),
        "eps": config.fallback_eps,
    }


def _param_groups(routed: dict[str, tuple[Route, Tensor]], config: MuGrokConfig) -> list[dict[str, Any]]:
    """Three groups: Muon matrices; AdamW tensors of 2+ dims (decayed); AdamW vectors (never decayed).

    Decaying norm gains and biases towards zero only fights the model, hence the separate AdamW group.
    """
    muon = [(name, p) for name, (route, p) in routed.items() if route == "muon"]
    decayed = [(name, p) for name, (route, p) in routed.items() if route == "adamw" and p.ndim >= 2]
    vectors = [(name, p) for name, (route, p) in routed.items() if route == "adamw" and p.ndim < 2]
    fallback_lr, fallback_decay = config.fallback_lr, config.fallback_weight_decay
    groups = [
        {"params": muon, "kind": "muon", "lr": config.muon_lr, "weight_decay": config.weight_decay},
        {"params": decayed, "kind": "adamw", "lr": fallback_lr, "weight_decay": fallback_decay},
        {"params": vectors, "kind": "adamw", "lr": fallback_lr, "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def _muon_hyper(group: dict[str, Any], lr: float) -> MuonHyper:
    return MuonHyper(
        lr=lr,
        weight_decay=group["weight_decay"],
        momentum=group["momentum"],
        nesterov=group["nesterov"],
        ns_steps=group["ns_steps"],
        ns_coefficients=tuple(group["ns_coefficients"]),
        ns_eps=group["ns_eps"],
        ns_dtype=DTYPES[group["ns_dtype"]],
    )


def _adamw_hyper(group: dict[str, Any], lr: float) -> AdamWHyper:
    beta1, beta2 = group["betas"]
    return AdamWHyper(lr=lr, weight_decay=group["weight_decay"], beta1=beta1, beta2=beta2, eps=group["eps"])
