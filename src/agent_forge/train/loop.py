"""The training loop shared by phases 1, 3, 5 and 6: checkpoints, exact resume, recovery, metrics, progress.

Resume is exact: the checkpoint carries weights, optimizer, scheduler, RNG and the data position, and batches
are addressed by position, so a resumed run reproduces the uninterrupted loss curve. Recovery follows spec
2.1.10: an out-of-memory error halves the micro-batch (gradient accumulation keeps the global batch) and falls
back to the CPU at micro-batch 1; a NaN or a loss spike reloads the last checkpoint with half the learning rate.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from agent_forge.config.loader import config_diff
from agent_forge.config.schema import PipelineConfig, TrainSection
from agent_forge.errors import ForgeError
from agent_forge.storage.checkpoints import CheckpointManager, TrainerState
from agent_forge.tracking.progress import ProgressReporter
from agent_forge.tracking.system import system_metrics
from agent_forge.train.batching import move_batch, split_batch
from agent_forge.train.distributed import world
from agent_forge.train.precision import autocast

# The trainer's own multiplier on the scheduled learning rate, halved at every divergence recovery (kept in
# the checkpoint); distinct from a config section's ``lr_scale`` and the optimizer group's ``lr_multiplier``.
RECOVERY_LR_FACTOR = "recovery_lr_factor"


class TrainContext(Protocol):
    """What the loop needs from the phase that runs it (``pipeline.context.PhaseContext`` provides it)."""

    phase_name: str
    config: PipelineConfig
    progress: ProgressReporter
    logger: Any  # a structlog logger: .info / .warning with key-value pairs

    @property
    def is_main(self) -> bool: ...

    def checkpoints(self, run_name: str, keep_last: int = 2) -> CheckpointManager: ...

    def log(self, step: int, metrics: dict[str, Any], model: str = "phase") -> None: ...

    def drop_metrics_after(self, model: str, step: int) -> None: ...


@dataclass
class StepOutput:
    """What a step function returns: the loss to minimise and figures to log."""

    loss: torch.Tensor
    metrics: dict[str, float] = field(default_factory=dict)


StepFn = Callable[[nn.Module, Any], StepOutput]
EvalFn = Callable[[nn.Module], dict[str, float]]


class TrainingDivergedError(ForgeError):
    """The loss became NaN or spiked more often than the recovery budget allows."""


@dataclass
class LoopResult:
    state: TrainerState
    losses: list[float]
    last_eval: dict[str, float]
    recoveries: int


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The loss averaged over DDP ranks, so every rank logs and judges divergence on the same number."""
    size = world()[1]
    if size == 1:
        return value
    value = value.clone()
    torch.distributed.all_reduce(value)
    return value / size


def is_oom(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def warmup_cosine(step: int, total: int, warmup: int, floor: float = 0.1) -> float:
    """Linear warm-up then cosine decay to ``floor`` of the peak learning rate."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class TrainLoop:
    """Runs ``total_steps`` optimizer steps of ``step_fn`` on ``batch_fn(position)`` batches."""

    def __init__(self, *, ctx: TrainContext, run_name: str, model: nn.Module, optimizer: torch.optim.Optimizer,
                 batch_fn: Callable[[int], Any], step_fn: StepFn, total_steps: int, train: TrainSection,
                 config: dict[str, Any], eval_fn: EvalFn | None = None, device: torch.device | None = None,
                 bf16: bool = False, log_every: int = 1) -> None:
        self.ctx, self.run_name, self.model, self.optimizer = ctx, run_name, model, optimizer
        self.batch_fn, self.step_fn, self.eval_fn = batch_fn, step_fn, eval_fn
        self.total_steps, self.train, self.config = total_steps, train, config
        self.device = device or torch.device("cpu")
        self.bf16, self.log_every = bf16, log_every
        self.checkpoints: CheckpointManager = ctx.checkpoints(run_name, keep_last=train.keep_checkpoints)
        self.state = TrainerState(extra={RECOVERY_LR_FACTOR: 1.0, "accum": 1, "recoveries": 0})
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        self.recent: deque[float] = deque(maxlen=100)
        self.losses: list[float] = []
        self.last_eval: dict[str, float] = {}

    def _lr_factor(self, step: int) -> float:
        return self.state.extra[RECOVERY_LR_FACTOR] * warmup_cosine(step, self.total_steps, self.train.warmup_steps)

    @property
    def unwrapped(self) -> nn.Module:
        return getattr(self.model, "module", self.model)

    # resume ---------------------------------------------------------------------------------------------
    def restore(self) -> bool:
        """Load the newest valid checkpoint of this run; True when one was found."""
        path = self.checkpoints.latest()
        if path is None:
            return False
        self.state, stored = self.checkpoints.load(path, self.unwrapped, self.optimizer, self.scheduler)
        if "lr_scale" in self.state.extra:  # a checkpoint written before the factor had its own name
            self.state.extra.setdefault(RECOVERY_LR_FACTOR, self.state.extra.pop("lr_scale"))
        differing = config_diff(stored, self.config)
        if differing:
            self.ctx.logger.warning("resuming with a config that differs from the checkpoint's",
                                    run=self.run_name, keys=differing)
            self.state.extra["config_diff"] = differing
        self.losses = list(self.state.extra.get("losses", []))
        self.recent.extend(self.losses[-100:])
        self.ctx.drop_metrics_after(self.run_name, self.state.step)
        self.ctx.logger.info("resumed from checkpoint", run=self.run_name, step=self.state.step)
        return True

    def save(self) -> None:
        if not self.ctx.is_main:
            return
        self.state.extra["losses"] = self.losses
        self.checkpoints.save(self.unwrapped, self.optimizer, self.state, self.config, self.scheduler)

    # one step -------------------------------------------------------------------------------------------
    def _forward_backward(self, batch: Any) -> StepOutput:
        chunks = split_batch(batch, self.state.extra["accum"])
        total = torch.zeros((), device=self.device)
        metrics: dict[str, float] = {}
        for chunk in chunks:
            with autocast(self.bf16, self.device):
                out = self.step_fn(self.model, move_batch(chunk, self.device))
            (out.loss / len(chunks)).backward()
            total += out.loss.detach().float() / len(chunks)
            for key, value in out.metrics.items():
                metrics[key] = metrics.get(key, 0.0) + float(value) / len(chunks)
        return StepOutput(mean_over_ranks(total), metrics)

    def _step_with_oom_recovery(self, batch: Any) -> StepOutput:
        while True:
            try:
                return self._forward_backward(batch)
            except RuntimeError as exc:
                if not is_oom(exc):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                self._shrink_after_oom(batch)

    def _shrink_after_oom(self, batch: Any) -> None:
        size = len(next(iter(batch.values()))) if isinstance(batch, dict) else len(batch)
        if self.state.extra["accum"] < size:
            self.state.extra["accum"] *= 2
            self.ctx.logger.warning("out of memory: halving the micro-batch", accum=self.state.extra["accum"])
        elif self.device.type != "cpu":
            self.device = torch.device("cpu")
            self.model.to(self.device)
            self.ctx.logger.warning("out of memory at micro-batch 1: falling back to the CPU")
        else:
            raise TrainingDivergedError("out of memory even at micro-batch 1 on the CPU",
                                        f"use a smaller preset or --set {self.ctx.phase_name}.train.batch_size=...")

    def _diverged(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        if len(self.recent) < 20 or self.state.step < self.train.warmup_steps:
            return False
        return loss > self.train.spike_factor * (sum(self.recent) / len(self.recent))

    def _recover(self, loss: float) -> None:
        """Reload the last checkpoint with half the learning rate (spec 2.1.10)."""
        recoveries = self.state.extra["recoveries"] + 1
        if recoveries > self.train.max_recoveries:
            raise TrainingDivergedError(f"training of {self.run_name} diverged (loss {loss}) {recoveries} times",
                                        self._lower_lr_hint())
        factor = self.state.extra[RECOVERY_LR_FACTOR] * 0.5
        self.optimizer.zero_grad(set_to_none=True)
        if not self.restore():
            raise TrainingDivergedError(f"training of {self.run_name} diverged before the first checkpoint",
                                        self._lower_lr_hint())
        self.state.extra.update({RECOVERY_LR_FACTOR: factor, "recoveries": recoveries})
        self._apply_lr_now()
        # the metric keeps its first name: the charts of stored sessions read it
        self.ctx.log(self.state.step, {"recovery/lr_scale": factor, "recovery/count": recoveries}, self.run_name)
        self.ctx.logger.warning("loss diverged: reloaded the last checkpoint with half the learning rate",
                                run=self.run_name, loss=loss, recovery_lr_factor=factor)

    def _lower_lr_hint(self) -> str:
        """The config key that lowers this run's learning rate (Phase 3 has one per stage)."""
        phase = self.ctx.phase_name
        key = {"bake": "thought_sft_lr_scale", "quietstar": "rl_lr_scale"}.get(self.run_name, "lr_scale")
        key = key if phase == "quietstar" else "lr_scale"
        return f"lower the learning rate with --set {phase}.{key}=0.5"

    def _apply_lr_now(self) -> None:
        """Set the current learning rates from the schedule (after the recovery factor changed)."""
        factor = self._lr_factor(self.state.step)
        for group, base in zip(self.optimizer.param_groups, self.scheduler.base_lrs, strict=True):
            group["lr"] = base * factor

    def _apply_update(self) -> None:
        if self.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    # the loop -------------------------------------------------------------------------------------------
    def run(self) -> LoopResult:
        self.restore()
        self.model.train()
        with self.ctx.progress.task(f"{self.ctx.phase_name}:{self.run_name}", self.total_steps,
                                    self.state.step) as bar:
            try:
                while self.state.step < self.total_steps:
                    self._one_step(bar)
            except KeyboardInterrupt:
                self.save()
                raise
        if self.eval_fn is not None and not self.last_eval:
            self._evaluate()
        self.save()
        return LoopResult(self.state, self.losses, self.last_eval, self.state.extra["recoveries"])

    def _one_step(self, bar: Any) -> None:
        """One optimizer step (or a roll-back to the last checkpoint when the loss diverged)."""
        if self.state.step == 0 and not self.checkpoints.list():
            self.save()
        batch = self.batch_fn(self.state.data_position)
        out = self._step_with_oom_recovery(batch)
        loss = float(out.loss)
        if self._diverged(loss):
            self._recover(loss)
            return
        self._apply_update()
        self.state.step += 1
        self.state.data_position += 1
        self.losses.append(loss)
        self.recent.append(loss)
        self._log_step(loss, out.metrics)
        bar.note(f"loss {loss:.3f}")  # before advance: the progress line of this step shows this step's loss
        bar.advance()
        self._periodic()

    def _log_step(self, loss: float, metrics: dict[str, float]) -> None:
        if self.state.step % self.log_every and self.state.step != self.total_steps:
            return
        figures = {"train/loss": loss, "train/loss_avg_100": sum(self.recent) / len(self.recent),
                   "train/lr": self.optimizer.param_groups[0]["lr"]}
        figures.update({f"train/{k}": v for k, v in metrics.items()})
        if self.state.step % self.ctx.config.tracking.system_metrics_every == 0:
            figures.update(system_metrics())
        self.ctx.log(self.state.step, figures, self.run_name)

    def _periodic(self) -> None:
        step = self.state.step
        if self.eval_fn is not None and (step % self.train.eval_every == 0 or step == self.total_steps):
            self._evaluate()
        if step % self.train.checkpoint_every == 0 and step != self.total_steps:
            self.save()

    def _evaluate(self) -> None:
        self.model.eval()
        with torch.no_grad():
            self.last_eval = self.eval_fn(self.unwrapped)
        self.model.train()
        self.ctx.log(self.state.step, {f"eval/{k}": v for k, v in self.last_eval.items()}, self.run_name)
        self.state.extra.setdefault("eval_history", []).append({"step": self.state.step, **self.last_eval})
