"""Runs phases in order, validates hand-offs, records everything, and resumes after a crash (spec 3.2.2).

Resume works at two levels: completed phases are skipped (their outputs are read back from the registry and
verified), and the interrupted phase continues from its last checkpoint (the phase's own trainer does that).
Ids and paths are deterministic, so a resumed session ends with the same registry rows as an uninterrupted one.
"""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Collection
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from agent_forge.config.schema import PHASE_NAMES, PipelineConfig
from agent_forge.errors import ForgeError, HandoffError, NotFoundError, RegistryError
from agent_forge.pipeline.context import PhaseContext, load_ref
from agent_forge.pipeline.handoff import HandoffOutcome, validate_handoff
from agent_forge.pipeline.phase import EvalRecord, ModelRef, Phase, PhaseResult
from agent_forge.storage.atomic import atomic_write_text, remove_stale_temporaries
from agent_forge.storage.cleanup import SessionCleanupManager
from agent_forge.storage.registry import ModelRegistry, utc_now
from agent_forge.storage.workspace import Workspace
from agent_forge.tracking.logging import configure_logging, get_logger
from agent_forge.tracking.progress import ProgressReporter
from agent_forge.tracking.sinks import MetricsTracker, SQLiteSink, WandbSink, is_main_process
from agent_forge.train.distributed import barrier, broadcast_object, init_from_env
from agent_forge.train.precision import apply_threads, resolve_device


class PhaseFailedError(ForgeError):
    """A phase raised; the session is marked failed and can be resumed once the cause is fixed."""


@dataclass
class SessionSummary:
    session_id: str
    status: str
    results: dict[str, PhaseResult] = field(default_factory=dict)
    handoffs: list[HandoffOutcome] = field(default_factory=list)


class _PhaseShare:
    """Moves the session's percent during a phase: (phases done + share of the phase's current bar) / phases.

    The share never goes back within a phase (a phase with several bars, like Phase 1's four training runs,
    holds its percent while a later bar starts over); a failed registry write costs one warning, not the run.
    """

    def __init__(self, orchestrator: Orchestrator, session_id: str, phases: int, logger: Any) -> None:
        self.orchestrator, self.session_id, self.phases, self.logger = orchestrator, session_id, phases, logger
        self.index, self.share, self.warned = 0, 0.0, False

    def start(self, index: int) -> None:
        self.index, self.share = index, 0.0

    def __call__(self, tasks: list[Any]) -> None:
        inner = [t for t in tasks if t.description != "phases"]
        if not inner:
            return
        share = max(self.share, min(inner[-1].fraction(), 0.99))  # 100% only when the phase is recorded
        if share <= self.share:
            return
        self.share = share
        try:
            self.orchestrator._set_session(self.session_id,
                                           progress_percent=100.0 * (self.index + share) / self.phases)
        except ForgeError as exc:
            if not self.warned:
                self.logger.warning("could not record progress", error=str(exc))
                self.warned = True


def new_session_id(preset: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{preset}-{uuid.uuid4().hex[:6]}"


@contextmanager
def session_lock(folder: Path):
    """Refuse to run one session twice at once; the OS frees the lock when a process dies (kill -9)."""
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / ".lock", "a+")  # noqa: SIM115 - held for the duration of the run
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise RegistryError(f"session {folder.name} is already running in another process",
                            "wait for it to finish or stop it, then `agent-forge resume`") from None
    try:
        yield
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class Orchestrator:
    """Creates sessions and runs any window of the phase sequence inside one."""

    def __init__(self, workspace: Workspace, registry: ModelRegistry, quiet: bool = False, *,
                 phases: dict[str, type[Phase]]) -> None:
        """``phases``: name -> Phase class, handed over by the composition root (``agent_forge.cli``)."""
        self.workspace = workspace
        self.registry = registry
        self.quiet = quiet
        self.phases = phases
        self.sequence = [name for name in PHASE_NAMES if name in phases]

    # sessions -----------------------------------------------------------------------------------------
    def create_session(self, config: PipelineConfig, session_id: str | None = None) -> str:
        init_from_env(resolve_device(config.runtime.device))
        session_id = broadcast_object(session_id or new_session_id(config.preset))
        folder = self.workspace.session_dir(session_id)
        data = config.model_dump(mode="json")
        if is_main_process():
            atomic_write_text(self.workspace.config_path(session_id), yaml.safe_dump(data, sort_keys=True))
            self.registry.create_session(session_id, config.preset, data)
        folder.mkdir(parents=True, exist_ok=True)
        barrier()
        return session_id

    def session_config(self, session_id: str) -> PipelineConfig:
        return self.registry.session_config(session_id)

    def completed_phases(self, session_id: str) -> dict[str, dict[str, Any]]:
        return {r["phase_name"]: r for r in self.registry.phase_runs(session_id) if r["status"] == "completed"}

    # running ------------------------------------------------------------------------------------------
    def run(self, session_id: str, start: str | None = None, stop: str | None = None,
            force: bool = False, config: PipelineConfig | None = None,
            rerun: Collection[str] = ()) -> SessionSummary:
        """Run phases ``start``..``stop`` (inclusive) of a session, skipping the ones already completed
        except those named in ``rerun``. A completed or partial session with nothing to run is left as
        it was (its stored results are still verified)."""
        config = config or self.session_config(session_id)
        window = self.phase_window(start, stop)
        init_from_env(resolve_device(config.runtime.device))
        apply_threads(config.runtime.threads)
        lock = session_lock(self.workspace.session_dir(session_id)) if is_main_process() else nullcontext()
        with lock:
            if is_main_process():
                remove_stale_temporaries(self.workspace.session_dir(session_id))
            barrier()
            configure_logging(self.workspace.log_path(session_id), quiet=self.quiet)
            tracker = self._tracker(session_id, config)
            try:
                summary = self._run_window(session_id, window, force, config, tracker, set(rerun))
            finally:
                tracker.close()
        return summary

    def phase_window(self, start: str | None, stop: str | None) -> list[str]:
        """The phases ``start``..``stop``; NotFoundError for an unknown or empty window (check it before a
        session is created, so that a typo never leaves a session behind)."""
        for name in (start, stop):
            if name is not None and name not in self.sequence:
                raise NotFoundError(f"unknown phase '{name}'", f"use one of: {', '.join(self.sequence)}")
        first = self.sequence.index(start) if start else 0
        last = self.sequence.index(stop) if stop else len(self.sequence) - 1
        if first > last:
            raise NotFoundError(f"phase window {start}..{stop} is empty", "put --from before --to")
        return self.sequence[first : last + 1]

    def _tracker(self, session_id: str, config: PipelineConfig) -> MetricsTracker:
        sinks: list[Any] = [SQLiteSink(self.registry, session_id)]
        if config.tracking.wandb != "off":
            sinks.append(WandbSink(session_id, self.workspace.session_dir(session_id) / "wandb",
                                   config.tracking.wandb, config.tracking.wandb_project,
                                   config.model_dump(mode="json")))
        return MetricsTracker(sinks)

    def _run_window(self, session_id: str, window: list[str], force: bool, config: PipelineConfig,
                    tracker: MetricsTracker, rerun: set[str]) -> SessionSummary:
        summary = SessionSummary(session_id, "running")
        done = self.completed_phases(session_id)
        status = self.registry.get_session(session_id)["status"]
        if status in ("completed", "partial") and all(n in done and n not in rerun for n in window):
            summary.results = {name: self._stored_result(name, done[name]) for name in window}
            summary.status = status
            return summary
        self._set_session(session_id, status="running", error=None)
        try:
            self._run_phases(summary, window, force, config, tracker, rerun)
        except ForgeError as exc:  # a failure outside a phase (a corrupt input, a hand-off) never stays running
            if self.registry.get_session(session_id)["status"] == "running":
                self._set_session(session_id, status="failed", current_phase=None, error=str(exc))
            raise
        done = self.completed_phases(session_id)
        final = "completed" if all(name in done for name in self.sequence) else "partial"
        self._set_session(session_id, status=final, current_phase=None, end_time=utc_now())
        summary.status = final
        if final == "completed" and is_main_process():
            SessionCleanupManager(self.workspace, self.registry, config.cleanup).on_session_complete()
        return summary

    def _run_phases(self, summary: SessionSummary, window: list[str], force: bool, config: PipelineConfig,
                    tracker: MetricsTracker, rerun: set[str]) -> None:
        session_id = summary.session_id
        logger = get_logger("pipeline").bind(session=session_id)
        main = is_main_process()
        heartbeat = self.workspace.progress_path(session_id) if main else None
        share = _PhaseShare(self, session_id, len(window), logger) if main else None
        with ProgressReporter(quiet=self.quiet, heartbeat=heartbeat, on_beat=share) as progress, \
                progress.task("phases", len(window)) as bar:
            for index, name in enumerate(window):
                if share is not None:
                    share.start(index)
                done = self.completed_phases(session_id)
                if name in done and name not in rerun:
                    logger.info("phase already completed, skipping", phase=name)
                    summary.results[name] = self._stored_result(name, done[name])
                else:
                    ctx = PhaseContext(session_id, name, config, self.workspace, self.registry, tracker,
                                       progress, logger.bind(phase=name))
                    bar.note(name)
                    summary.results[name] = self._run_phase(ctx, self._inputs_for(session_id, name), force)
                summary.handoffs.append(self._handoff(session_id, name, summary.results[name], config, force))
                barrier()  # other ranks read this phase's registry rows next
                bar.advance()
                self._set_session(session_id, progress_percent=100.0 * (index + 1) / len(window))

    def _set_session(self, session_id: str, **fields: Any) -> None:
        """Update the session row (rank 0 only)."""
        if is_main_process():
            self.registry.update_session(session_id, **fields)

    def _inputs_for(self, session_id: str, name: str) -> list[ModelRef]:
        index = self.sequence.index(name)
        if index == 0:
            return []
        previous = self.sequence[index - 1]
        done = self.completed_phases(session_id)
        if previous not in done:
            raise NotFoundError(f"phase '{name}' needs the output of '{previous}', which has not completed",
                                f"run `agent-forge run --from {previous}` or `agent-forge resume {session_id}`")
        return [load_ref(self.registry, mid) for mid in done[previous]["output_models"]]

    def _run_phase(self, ctx: PhaseContext, inputs: list[ModelRef], force: bool) -> PhaseResult:
        phase = self.phases[ctx.phase_name]()
        ok, message = phase.validate_input(ctx, inputs)
        if not ok and not force:
            raise HandoffError(f"input of phase '{ctx.phase_name}' is invalid: {message}",
                               "fix the previous phase's output or pass --force")
        self._record_start(ctx)
        started = time.perf_counter()
        try:
            result = phase.run(ctx, inputs)
        except KeyboardInterrupt:
            self._record_stop(ctx, "interrupted", "interrupted by the user", "paused")
            raise
        except ForgeError as exc:
            self._record_stop(ctx, "failed", str(exc), "failed")
            raise
        except Exception as exc:
            self._record_stop(ctx, "failed", f"{exc.__class__.__name__}: {exc}", "failed")
            raise PhaseFailedError(f"phase '{ctx.phase_name}' failed: {exc.__class__.__name__}: {exc}",
                                   f"see {self.workspace.log_path(ctx.session_id)}; then "
                                   f"`agent-forge resume {ctx.session_id}`") from exc
        result.duration_seconds = result.duration_seconds or time.perf_counter() - started
        self._record_done(ctx, result)
        return result

    def _record_start(self, ctx: PhaseContext) -> None:
        if not is_main_process():
            return
        self.registry.upsert_phase_run(ctx.session_id, ctx.phase_name, phase_index=PHASE_NAMES.index(ctx.phase_name),
                                       status="running", started_at=utc_now(), error=None)
        self.registry.update_session(ctx.session_id, status="running", current_phase=ctx.phase_name)

    def _record_stop(self, ctx: PhaseContext, status: str, error: str, session_status: str) -> None:
        if not is_main_process():
            return
        self.registry.upsert_phase_run(ctx.session_id, ctx.phase_name, status=status, error=error,
                                       ended_at=utc_now())
        self.registry.update_session(ctx.session_id, status=session_status, error=error)

    def _record_done(self, ctx: PhaseContext, result: PhaseResult) -> None:
        if not is_main_process():
            return
        # the completion mark is the last write: a kill between the two would leave a completed phase whose
        # metric rows a resumed run never writes (it skips completed phases)
        ctx.log(0, {"phase/duration_seconds": result.duration_seconds, "phase/success": result.success})
        self.registry.upsert_phase_run(
            ctx.session_id, ctx.phase_name, status="completed" if result.success else "failed",
            ended_at=utc_now(), duration_seconds=result.duration_seconds, output_models_json=result.model_ids,
            metrics_json=result.metrics, artifacts_json=result.artifacts,
            before_json=result.before.to_dict() if result.before else None,
            after_json=result.after.to_dict() if result.after else None, error=result.error)

    def _stored_result(self, name: str, row: dict[str, Any]) -> PhaseResult:
        models = [load_ref(self.registry, mid) for mid in row["output_models"]]
        return PhaseResult(True, name, models, row["metrics"] or {}, row["artifacts"] or {},
                           row["duration_seconds"] or 0.0,
                           EvalRecord(**row["before"]) if row.get("before") else None,
                           EvalRecord(**row["after"]) if row.get("after") else None)

    def _handoff(self, session_id: str, name: str, result: PhaseResult, config: PipelineConfig,
                 force: bool) -> HandoffOutcome:
        index = PHASE_NAMES.index(name)
        target = PHASE_NAMES[index + 1] if index + 1 < len(PHASE_NAMES) else "output"
        outcome = validate_handoff(name, target, config.handoff.get(f"{name}->{target}"), result)
        forced = force and not outcome.passed
        if is_main_process():
            self.registry.record_handoff(session_id, name, target, result.model_ids,
                                         "passed" if outcome.passed else ("forced" if forced else "failed"),
                                         {"checks": outcome.checks}, forced=forced)
        if not outcome.passed and not force:
            self._set_session(session_id, status="failed", error=f"hand-off {name}->{target}: {outcome.summary()}")
            raise HandoffError(f"hand-off {name}->{target} failed: {outcome.summary()}",
                               f"change the preset's thresholds deliberately, or continue anyway with "
                               f"`agent-forge resume {session_id} --force`")
        return outcome

