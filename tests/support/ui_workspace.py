"""A workspace filled through the real storage APIs, for the dashboard, report and notebook tests.

Two sessions: one that went through all eight phases (timeline, hand-offs, D6 records, metric curves of every
kind the dashboard groups, a model lineage from the trunk to the final model) and one still running in its
third phase. Models are real smoke-shape ``ForgeForCausalLM`` weights saved with ``save_pretrained`` through
``PhaseContext.save_model``, so they load, verify and generate like a pipeline's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import torch

from agent_forge.config import load_config
from agent_forge.config.schema import PHASE_NAMES, HandoffRule
from agent_forge.data.tokenizer import ForgeTokenizer, train_tokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.model_io import model_writer
from agent_forge.pipeline.context import PhaseContext
from agent_forge.pipeline.handoff import validate_handoff
from agent_forge.pipeline.orchestrator import Orchestrator
from agent_forge.pipeline.phase import EvalRecord, ModelRef, PhaseResult
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace
from agent_forge.tracking.logging import get_logger
from agent_forge.tracking.progress import ProgressReporter
from agent_forge.tracking.sinks import MetricsTracker, SQLiteSink
from support.shapes import unit_config

DONE = "20260101-090000-smoke-done01"
LIVE = "20260102-090000-smoke-live02"
SPECIALISTS = ("reasoning", "memory", "adaptive")
# held-out perplexity / accuracy / size MB / latency ms after each phase: bitnet trades perplexity for size
TRAJECTORY = {"cognate": (40.0, 0.10, 2.0, 3.0), "evomerge": (35.0, 0.14, 2.0, 3.0),
              "quietstar": (33.0, 0.18, 2.0, 3.2), "bitnet": (38.0, 0.16, 0.4, 2.5),
              "forge": (30.0, 0.22, 0.4, 2.5), "baking": (29.0, 0.24, 0.4, 2.5),
              "edge": (29.5, 0.24, 0.2, 2.0), "final": (29.6, 0.24, 0.1, 2.0)}


@dataclass
class FilledWorkspace:
    root: Path
    workspace: Workspace
    registry: ModelRegistry
    models: dict[str, str] = field(default_factory=dict)  # "<phase>/<name>" -> model id of the DONE session


def _tokenizer() -> ForgeTokenizer:
    corpus = [f"Question: what is {a} plus {b}? Answer: {a + b}" for a in range(30) for b in range(10)]
    return train_tokenizer(corpus, 512)


def _models() -> list[ForgeForCausalLM]:
    out = []
    for seed in range(3):
        torch.manual_seed(seed)
        out.append(ForgeForCausalLM(unit_config()).eval())
    return out


def _context(filled: FilledWorkspace, session_id: str, phase: str, config) -> PhaseContext:
    tracker = MetricsTracker([SQLiteSink(filled.registry, session_id)])
    return PhaseContext(session_id, phase, config, filled.workspace, filled.registry, tracker,
                        ProgressReporter(quiet=True), get_logger("test").bind(phase=phase))


def _record(phase: str, before: tuple | None) -> tuple[EvalRecord | None, EvalRecord]:
    ppl, acc, size, lat = TRAJECTORY[phase]
    after = EvalRecord(perplexity=ppl, loss=float(np.log(ppl)), accuracy=acc, size_mb=size, latency_ms=lat)
    if before is None:
        return EvalRecord(perplexity=500.0, loss=float(np.log(500.0)), accuracy=0.0, size_mb=2.0,
                          latency_ms=3.0), after
    p, a, s, la = before
    return EvalRecord(perplexity=p, loss=float(np.log(p)), accuracy=a, size_mb=s, latency_ms=la), after


def _curves(ctx: PhaseContext, rng: np.random.Generator) -> None:
    """The metric curves a phase of this kind logs (names as the phases and the TrainLoop use them)."""
    phase = ctx.phase_name
    runs = ("trunk", *SPECIALISTS) if phase == "cognate" else (phase,)
    for index, run in enumerate(runs):
        for step in range(1, 31):
            loss = 6.0 * np.exp(-step / (8 + 2 * index)) + 2.0 + 0.05 * rng.standard_normal()
            ctx.log(step, {"train/loss": loss, "train/lr": 1e-3 * min(1.0, step / 5)}, model=run)
            if step % 10 == 0 and (run in ("trunk", phase) or step == 30):  # specialists: one final eval
                ctx.log(step, {"eval/loss": loss + 0.1}, model=run)
    if phase == "evomerge":  # as Phase 2 logs them: the spec's per-generation figures under "evolution"
        for gen in range(1, 11):
            best = 0.5 + 0.3 * (1 - np.exp(-gen / 3))
            usage = {f"combo_usage_{c}": float((c + gen) % 3) for c in range(8)}
            ctx.log(gen, {"generation": gen, "best_fitness": best, "avg_fitness": best - 0.1,
                          "min_fitness": best - 0.2, "champion_fitness": best, "champion_combo_id": 5,
                          "diversity_score": 0.3 / gen, **usage}, model="evolution")
    if phase == "quietstar":
        for step in range(1, 9):
            ctx.log(step, {"thoughts/avg_coherence": 0.4 + 0.05 * step,
                           "thoughts/validity_rate": 0.5 + 0.04 * step})
    if phase == "forge":
        for step in range(1, 41):
            ctx.log(step, {"curriculum/level": 1 + step // 10})
    if phase == "edge":
        for stage, ratio in enumerate((4.0, 8.0, 16.0), start=1):
            ctx.log(stage, {"stage/compression_ratio": ratio, "stage/perplexity": 29.0 + stage * 0.2})
    if phase == "final":  # as Phase 8 logs them: each stage its own "model" with one point
        for stage, name in enumerate(("seedlm", "vptq", "entropy")):
            ctx.log(stage, {"bytes": 4e5 / 2 ** stage, "ratio": 4.0 * 2 ** stage, "perplexity": 29.0 + stage},
                    model=f"stage:{name}")
    ctx.log(0, {"phase/duration_seconds": 60.0 + 10 * PHASE_NAMES.index(phase), "phase/success": True})


# as Phase 8 records its size/quality curve: candidates, its own file, the plain baselines
SIZE_QUALITY = [
    {"label": "usq step 0.3", "role": "candidate", "bytes": 250_000, "perplexity": 29.4, "accuracy": {"mc": 0.4}},
    {"label": "usq step 0.6", "role": "candidate", "bytes": 230_000, "perplexity": 30.9, "accuracy": {"mc": 0.3}},
    {"label": "Phase 8 file", "role": "chosen", "bytes": 250_000, "perplexity": 29.4, "accuracy": {"mc": 0.4}},
    {"label": "Q4_0 blocks + xz -9e", "role": "baseline", "bytes": 280_000, "perplexity": 29.3,
     "accuracy": {"mc": 0.4}},
]


def _save(ctx: PhaseContext, name: str, model: ForgeForCausalLM, tokenizer: ForgeTokenizer,
          parents: list[str], extra: dict) -> ModelRef:
    params = sum(p.numel() for p in model.parameters())
    metadata = {"role": name, **extra, **({"size_quality": SIZE_QUALITY} if ctx.phase_name == "final" else {})}
    return ctx.save_model(name, model_writer(model, tokenizer), metadata, metrics=extra,
                          parameters=params, parents=parents, tags=[ctx.phase_name])


def _phase_models(ctx: PhaseContext, nets: list, tokenizer: ForgeTokenizer,
                  parents: list[str]) -> list[ModelRef]:
    phase = ctx.phase_name
    if phase == "cognate":
        trunk = _save(ctx, "trunk", nets[0], tokenizer, [], {"final_loss": 2.6})
        return [_save(ctx, spec, nets[1 + i % 2], tokenizer, [trunk.model_id],
                      {"specialization": spec, "final_loss": 2.5 + 0.1 * i, "loss_drop": 0.4 - 0.05 * i})
                for i, spec in enumerate(SPECIALISTS)]
    extra = {"fitness": 0.79, "champion_combo_id": 5} if phase == "evomerge" else {"final_loss": 2.3}
    return [_save(ctx, "champion" if phase == "evomerge" else phase, nets[PHASE_NAMES.index(phase) % 3],
                  tokenizer, parents, extra)]


def _finish_phase(ctx: PhaseContext, refs: list[ModelRef], before: EvalRecord | None, after: EvalRecord,
                  start: datetime, seconds: float | None) -> None:
    registry, sid, phase = ctx.registry, ctx.session_id, ctx.phase_name
    registry.upsert_phase_run(sid, phase, phase_index=PHASE_NAMES.index(phase), status="running",
                              started_at=start.isoformat(timespec="milliseconds"), error=None)
    if seconds is None:
        return
    metrics = {"before/perplexity": before.perplexity, "after/perplexity": after.perplexity}
    if phase == "evomerge":
        metrics.update({"champion_combo_id": 5, "champion_combo_binary": "101", "fitness": 0.79})
    result = PhaseResult(True, phase, refs, metrics, before=before, after=after, duration_seconds=seconds)
    registry.upsert_phase_run(
        sid, phase, status="completed", ended_at=(start + timedelta(seconds=seconds)).isoformat(),
        duration_seconds=seconds, output_models_json=result.model_ids, metrics_json=result.metrics,
        artifacts_json={}, before_json=before.to_dict(), after_json=after.to_dict(), error=None)
    index = PHASE_NAMES.index(phase)
    target = PHASE_NAMES[index + 1] if index + 1 < len(PHASE_NAMES) else "output"
    rule = HandoffRule(num_models=len(refs), required_metadata=["role"])
    outcome = validate_handoff(phase, target, rule, result)
    registry.record_handoff(sid, phase, target, result.model_ids, "passed" if outcome.passed else "failed",
                            {"checks": outcome.checks})


def _fill_session(filled: FilledWorkspace, session_id: str, phases: list[str], running: str | None,
                  start: datetime, nets: list, tokenizer: ForgeTokenizer, seed: int) -> None:
    config = load_config("smoke")
    Orchestrator(filled.workspace, filled.registry, quiet=True, phases={}).create_session(config, session_id)
    rng = np.random.default_rng(seed)
    parents: list[str] = []
    previous = None
    clock = start
    for phase in [*phases, *([running] if running else [])]:
        ctx = _context(filled, session_id, phase, config)
        before, after = _record(phase, previous)
        _curves(ctx, rng)
        if phase == running:
            _finish_phase(ctx, [], before, after, datetime.now(timezone.utc) - timedelta(seconds=30), None)
            break
        refs = _phase_models(ctx, nets, tokenizer, parents)
        seconds = 60.0 + 15 * PHASE_NAMES.index(phase)
        _finish_phase(ctx, refs, before, after, clock, seconds)
        clock += timedelta(seconds=seconds + 2)
        parents, previous = [r.model_id for r in refs], TRAJECTORY[phase]
        if session_id == DONE:
            filled.models.update({f"{phase}/{r.model_id.rsplit('__', 1)[1]}": r.model_id for r in refs})
    progress = 100.0 * len(phases) / len(PHASE_NAMES)
    if running:
        filled.registry.update_session(session_id, status="running", current_phase=running,
                                       progress_percent=progress)
    else:
        filled.registry.update_session(session_id, status="completed", current_phase=None,
                                       progress_percent=progress, end_time=clock.isoformat())


def fill_workspace(root: Path) -> FilledWorkspace:
    """Create the two sessions under ``root`` (about two seconds on one CPU thread)."""
    workspace = Workspace(root)
    filled = FilledWorkspace(Path(root), workspace, ModelRegistry(workspace.registry_path))
    tokenizer, nets = _tokenizer(), _models()
    done_start = datetime.now(timezone.utc) - timedelta(seconds=sum(62 + 15 * i for i in range(8)))
    _fill_session(filled, DONE, list(PHASE_NAMES), None, done_start, nets, tokenizer, seed=1)
    live_start = datetime.now(timezone.utc) - timedelta(seconds=60 + 75 + 4 + 30)
    _fill_session(filled, LIVE, ["cognate", "evomerge"], "quietstar", live_start, nets, tokenizer, seed=2)
    return filled
