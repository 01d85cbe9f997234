"""Two small but real phases for orchestrator tests: a tiny torch LM trained with the shared TrainLoop
(checkpoints, resume) and a phase that averages its inputs. They exercise every orchestrator code path
without the cost of the real phases."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from agent_forge.config.schema import TrainSection
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult
from agent_forge.train.loop import StepOutput, TrainLoop

VOCAB = 17
SEQ = 12


class TinyLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.mix = nn.Linear(16, 16)
        self.head = nn.Linear(16, VOCAB)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        hidden = torch.cumsum(self.embed(ids), dim=1) / torch.arange(1, ids.shape[1] + 1).view(1, -1, 1)
        return self.head(torch.tanh(self.mix(hidden)))


def batch_at(position: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1000 + position)
    start = torch.randint(0, VOCAB, (8, 1), generator=gen)
    return (start + torch.arange(SEQ).view(1, -1)) % VOCAB


def lm_step(model: nn.Module, batch: torch.Tensor) -> StepOutput:
    logits = model(batch[:, :-1])
    loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), batch[:, 1:].reshape(-1))
    return StepOutput(loss, {"tokens": float(batch.numel())})


def heldout_loss(model: nn.Module) -> float:
    with torch.no_grad():
        return float(lm_step(model, batch_at(10_000)).loss)


def _write_state(state: dict[str, torch.Tensor]):
    def write(folder: Path) -> None:
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))

    return write


class TinyTrainPhase(Phase):
    """Trains two tiny LMs (so the next phase merges them); honours TINY_STEP_DELAY to be killable mid-run."""

    name = "cognate"
    expected_inputs = 0
    steps = 40

    def run(self, ctx, inputs: list[ModelRef]) -> PhaseResult:
        refs, losses = [], {}
        for seed in (1, 2):
            torch.manual_seed(seed)
            model = TinyLM()
            before = heldout_loss(model)
            loop = TrainLoop(ctx=ctx, run_name=f"lm{seed}", model=model,
                             optimizer=torch.optim.AdamW(model.parameters(), lr=3e-2),
                             batch_fn=batch_at, step_fn=_slow(lm_step), total_steps=self.steps,
                             train=TrainSection(checkpoint_every=5, warmup_steps=2, eval_every=10),
                             config={"seed": seed}, eval_fn=lambda m: {"loss": heldout_loss(m)})
            result = loop.run()
            losses[f"lm{seed}"] = result.losses[-1]
            after = heldout_loss(model)
            refs.append(ctx.save_model(f"lm{seed}", _write_state(model.state_dict()),
                                       {"final_loss": after, "loss_drop": 1 - after / before},
                                       parameters=sum(p.numel() for p in model.parameters())))
        return PhaseResult(True, self.name, refs, {"final_losses": losses},
                           before=EvalRecord(loss=before), after=EvalRecord(loss=after))


def _slow(step):
    delay = float(os.environ.get("TINY_STEP_DELAY", "0"))

    def wrapped(model, batch):
        if delay:
            time.sleep(delay)
        return step(model, batch)

    return wrapped


class TinyMergePhase(Phase):
    """Averages its input models' weights and records the merged model's held-out loss as 'fitness'."""

    name = "evomerge"
    expected_inputs = 2

    def run(self, ctx, inputs: list[ModelRef]) -> PhaseResult:
        states = [load_file(str(ref.path / "model.safetensors")) for ref in inputs]
        merged = {k: sum(s[k] for s in states) / len(states) for k in states[0]}
        model = TinyLM()
        model.load_state_dict(merged)
        loss = heldout_loss(model)
        ref = ctx.save_model("merged", _write_state(merged), {"fitness": 1.0 / loss},
                             parameters=sum(v.numel() for v in merged.values()),
                             parents=[r.model_id for r in inputs], tags=["champion"])
        ctx.log(1, {"fitness": 1.0 / loss})
        return PhaseResult(True, self.name, [ref], {"fitness": 1.0 / loss}, after=EvalRecord(loss=loss))


TEST_PHASES = {"cognate": TinyTrainPhase, "evomerge": TinyMergePhase}
