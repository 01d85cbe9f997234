"""TRM recursion on top of the backbone features x.

Each step refines a latent z <- g_phi(x, y, z) `micro_steps` times, then updates the answer
y <- h_psi(y, z) and reads logits_t = lm_head(norm(y)). y starts at x (the backbone's own answer), z at a
learned vector. g_phi and h_psi are position-wise residual MLPs, so a position's recursion never looks at
another position: halting one decoded token at a time equals halting inside a full-sequence pass.

Three drivers share one step function:
- `run_all_steps`: every step for every position (training with deep supervision). Between steps z and
  the recursion's own contribution y - x are detached, x is not: y re-enters the next step as
  x + (y - x).detach(), equal in value, so every step's loss reaches the backbone through the identity path
  (detaching all of y would leave later steps only the small g_phi path into x, and a step weighting that
  favours late steps would then starve the backbone);
- `run_masked`: every step, then halting applied with masks (no data-dependent control flow, for export);
- `run_early_exit`: positions drop out as they halt and the loop ends when none is left (inference).
All three give the same logits at the halting step: each selects the normed answer state of the
halting step and applies the output head once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from agent_forge.model.act import ACTHead, halting_probability, halting_steps
from agent_forge.model.config import ForgeConfig

Module = Callable[[torch.Tensor], torch.Tensor]


class ResidualMLP(nn.Module):
    """v + down(silu(up(norm(sum of inputs)))): the shape of both g_phi and h_psi."""

    def __init__(self, hidden_size: int, trm_hidden: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.RMSNorm(hidden_size, eps=eps)
        self.up = nn.Linear(hidden_size, trm_hidden, bias=False)
        self.down = nn.Linear(trm_hidden, hidden_size, bias=False)

    def forward(self, residual: torch.Tensor, mixed: torch.Tensor) -> torch.Tensor:
        return residual + self.down(F.silu(self.up(self.norm(mixed))))


class TRMCore(nn.Module):
    """g_phi (latent refine), h_psi (answer update) and the initial latent."""

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__()
        eps = float(config.rms_norm_eps)
        self.micro_steps = config.trm_micro_steps
        self.z_init = nn.Parameter(torch.zeros(config.hidden_size))
        self.refine = ResidualMLP(config.hidden_size, config.trm_hidden, eps)
        self.update = ResidualMLP(config.hidden_size, config.trm_hidden, eps)

    def initial(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, self.z_init.to(x.dtype).expand_as(x)

    def step(self, x: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for _ in range(self.micro_steps):
            z = self.refine(z, x + y + z)
        return self.update(y, y + z), z


@dataclass
class StepOutputs:
    """What each step produced (training path): normed answer states, ACT logits, latents."""

    hidden: list[torch.Tensor]
    act_logits: list[torch.Tensor]
    latents: list[torch.Tensor]


@dataclass
class HaltedOutput:
    """Logits and normed hidden state at each position's halting step, and that step (0-based)."""

    logits: torch.Tensor
    hidden: torch.Tensor
    halt_step: torch.Tensor


def run_all_steps(core: TRMCore, act: ACTHead, x: torch.Tensor, t_max: int, norm: Module) -> StepOutputs:
    """All T_max steps for all positions; z and y - x are detached between steps (see the module docstring).
    No logits are formed here: the loss uses the fused head CE and the output head runs once, on the
    halting-step states."""
    y, z = core.initial(x)
    out = StepOutputs([], [], [])
    for t in range(t_max):
        if t:
            y, z = (x + (y - x).detach() if y.requires_grad else y), z.detach()
        y, z = core.step(x, y, z)
        out.hidden.append(norm(y))
        out.act_logits.append(act(z))
        out.latents.append(z)
    return out


def select_halted(steps: StepOutputs, threshold: float, head: Module) -> HaltedOutput:
    """Pick each position's halting-step state with masks, then apply the head once (export friendly)."""
    probs = [halting_probability(q) for q in steps.act_logits]
    halt = halting_steps(probs, threshold)
    hidden = steps.hidden[-1]
    for t in range(len(steps.hidden) - 2, -1, -1):
        hidden = torch.where((halt == t).unsqueeze(-1), steps.hidden[t], hidden)
    return HaltedOutput(head(hidden), hidden, halt)


def run_masked(
    core: TRMCore, act: ACTHead, x: torch.Tensor, t_max: int, threshold: float, norm: Module, head: Module
) -> HaltedOutput:
    return select_halted(run_all_steps(core, act, x, t_max, norm), threshold, head)


def run_early_exit(
    core: TRMCore, act: ACTHead, x: torch.Tensor, t_max: int, threshold: float, norm: Module, head: Module
) -> HaltedOutput:
    """Positions leave the loop at their halting step; the head runs once per position."""
    shape = x.shape[:-1]
    flat_x = x.reshape(-1, x.shape[-1])
    count = flat_x.shape[0]
    hidden = torch.empty_like(flat_x)
    halt = torch.full((count,), t_max - 1, dtype=torch.long, device=x.device)
    active = torch.arange(count, device=x.device)
    y, z = core.initial(flat_x)
    for t in range(t_max):
        y, z = core.step(flat_x, y, z)
        last = t + 1 == t_max
        stop = torch.ones_like(active, dtype=torch.bool) if last else halting_probability(act(z)) >= threshold
        if bool(stop.any()):
            done = active[stop]
            normed = norm(y[stop])
            hidden = hidden.to(normed.dtype).index_copy(0, done, normed)
            halt[done] = t
        keep = ~stop
        if not bool(keep.any()):
            break
        active, flat_x, y, z = active[keep], flat_x[keep], y[keep], z[keep]
    hidden = hidden.view(*shape, -1)
    return HaltedOutput(head(hidden), hidden, halt.view(shape))
