"""Read-only queries the dashboard, the run report and the notebook share.

The registry is opened with a ``mode=ro`` URI: in WAL mode a reader never blocks the pipeline that writes, and
a dashboard bug can never change a run's records. Everything here returns plain dataclasses and dicts, so the
Streamlit pages, the static report and a notebook render the same numbers.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from agent_forge.config.schema import PHASE_NAMES
from agent_forge.data.tasks import TASK_KINDS
from agent_forge.errors import ArtifactCorruptError, NotFoundError
from agent_forge.storage.artifacts import METADATA, ModelRef
from agent_forge.storage.atomic import sha256_file
from agent_forge.storage.registry import ModelRegistry
from agent_forge.storage.workspace import Workspace

TRAJECTORY_FIELDS = ("perplexity", "loss", "bits_per_byte", "accuracy", "size_mb", "latency_ms")
LOWER_IS_BETTER = {"perplexity": True, "loss": True, "bits_per_byte": True, "accuracy": False,
                   "size_mb": True, "latency_ms": True}
CHART_PRIORITY = ("loss", "fitness", "coherence", "validity", "compression", "perplexity", "accuracy",
                  "curriculum", "level")
_STAT_PREFIX = re.compile(r"^(best|avg|mean|min|max|final|median|champion)_")
_STAT_SUFFIX = re.compile(r"_(avg_\d+|ma|ema|\d+)$")


@dataclass(frozen=True)
class Series:
    """One metric of one model in one phase, ordered by step."""

    phase: str
    model: str
    name: str
    steps: list[int]
    values: list[float]
    times: list[float]

    @property
    def last(self) -> float:
        return self.values[-1]


@dataclass(frozen=True)
class Trace:
    label: str
    series: Series


@dataclass
class ChartGroup:
    """Series drawn in one chart: same phase and the same quantity (e.g. every model's train/loss).

    ``kind`` is ``curve`` (x = step) or ``stages``: one value per model, drawn across the models in step
    order (e.g. Phase 8 logs each compression stage as its own model with one point).
    """

    phase: str
    key: str
    title: str
    traces: list[Trace] = field(default_factory=list)
    kind: str = "curve"


@dataclass
class PhaseRow:
    """One of the eight phases of a session, as the timeline shows it."""

    index: int
    phase: str
    status: str
    started_at: str | None = None
    ended_at: str | None = None
    duration_s: float | None = None
    models: list[str] = field(default_factory=list)
    handoff: str | None = None
    handoff_target: str | None = None
    handoff_checks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Lineage:
    """The models a model came from (ancestors) and the ones made from it (descendants)."""

    root: str
    nodes: dict[str, dict[str, Any]]
    edges: list[tuple[str, str]]

    def ancestors(self) -> list[str]:
        return _walk(self.root, {c: [p for p, c2 in self.edges if c2 == c] for _, c in self.edges})

    def descendants(self) -> list[str]:
        return _walk(self.root, {p: [c for p2, c in self.edges if p2 == p] for p, _ in self.edges})


def _walk(start: str, links: dict[str, list[str]]) -> list[str]:
    seen: list[str] = []
    frontier = list(links.get(start, []))
    while frontier:
        node = frontier.pop(0)
        if node not in seen and node != start:
            seen.append(node)
            frontier.extend(links.get(node, []))
    return seen


def parse_time(stamp: str | None) -> datetime | None:
    """Registry timestamps are ISO 8601 in UTC; older rows may lack the zone."""
    if not stamp:
        return None
    value = datetime.fromisoformat(str(stamp))
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def metric_family(name: str) -> tuple[str, str]:
    """(prefix, quantity) of a metric name: ``generation/best_fitness`` -> (``generation``, ``fitness``)."""
    prefix, _, last = name.rpartition("/")
    base = _STAT_SUFFIX.sub("", _STAT_PREFIX.sub("", last))
    return prefix, base or last


def _priority(key: str) -> int:
    lowered = key.lower()
    return next((i for i, word in enumerate(CHART_PRIORITY) if word in lowered), len(CHART_PRIORITY))


def chart_groups(series: list[Series], min_points: int = 2) -> list[ChartGroup]:
    """Group curves into charts by phase and quantity, plus per-stage charts of one-point series.

    A curve that only repeats its step (a ``generation`` counter) carries nothing and is left out; single
    values that no other model shares are left to tables.
    """
    buckets: dict[tuple[str, str], list[Series]] = defaultdict(list)
    singles: dict[tuple[str, str], list[Series]] = defaultdict(list)
    for item in series:
        if len(item.steps) >= min_points and item.values != [float(s) for s in item.steps]:
            prefix, base = metric_family(item.name)
            buckets[(item.phase, f"{prefix}/{base}" if prefix else base)].append(item)
        elif len(item.steps) == 1:
            singles[(item.phase, item.name)].append(item)
    groups = []
    for (phase, key), items in buckets.items():
        models = {s.model for s in items}
        names = {s.name for s in items}
        ordered = sorted(items, key=lambda s: (s.model, s.name))
        traces = [Trace(_label(s, len(models), len(names)), s) for s in ordered]
        groups.append(ChartGroup(phase, key, f"{phase}: {key}", traces))
    for (phase, name), items in singles.items():
        if len({s.model for s in items}) >= min_points:
            ordered = sorted(items, key=lambda s: (s.steps[0], s.model))
            traces = [Trace(s.model, s) for s in ordered]
            across = "stage" if all(s.model.startswith("stage") for s in items) else "model"
            groups.append(ChartGroup(phase, name, f"{phase}: {name} per {across}", traces, kind="stages"))
    order = {name: i for i, name in enumerate(PHASE_NAMES)}
    groups.sort(key=lambda g: (order.get(g.phase, len(order)), _priority(g.key), g.key))
    return groups


def _label(item: Series, n_models: int, n_names: int) -> str:
    if n_names == 1 and item.model != "phase":
        return item.model
    short = item.name.rpartition("/")[2]
    return short if n_models == 1 else f"{item.model}: {short}"


def lock_held(lock_file: Path) -> bool | None:
    """Whether a process holds the session's flock, read from /proc/locks without taking the lock.

    Taking the lock, even shared and for a moment, could make a starting pipeline refuse to run; reading the
    kernel's lock table cannot. ``None`` where the table is unavailable (not Linux).
    """
    table = Path("/proc/locks")
    if not lock_file.exists():
        return False
    if not table.exists():
        return None
    stat = lock_file.stat()
    ident = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    for line in table.read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5] == ident:
            return True
    return False


def with_interval(value: float | None, interval: dict[str, Any]) -> str:
    """``0.462 (0.437-0.487)``: an accuracy with its 95% interval, ``-`` when not measured."""
    if value is None:
        return "-"
    if interval.get("low") is None or interval.get("high") is None:
        return f"{value:.3f}"
    return f"{value:.3f} ({interval['low']:.3f}-{interval['high']:.3f})"


def accuracy_cells(row: dict[str, Any]) -> dict[str, str]:
    """A trajectory row's accuracy overall and per kind, each with its interval (mc with its chance)."""
    cells = {"accuracy (95% CI)": with_interval(row["accuracy"], row["accuracy_interval"])}
    for kind in TASK_KINDS:
        entry = row["kinds"].get(kind)
        label = kind
        if entry and entry.get("chance"):
            label = f"{kind} (chance {entry['chance']:.3f})"
        cells[label] = with_interval(entry["value"], entry) if entry else "-"
    think = row.get("think") or {}
    cells["arith, think mode"] = with_interval(think.get("value"), think)  # measured where a phase thinks
    tools = row.get("tools") or {}
    cells["arith, tools mode"] = with_interval(tools.get("value"), tools)  # measured from the baked model on
    return cells


def _interval(extra: dict[str, Any], name: str) -> dict[str, float | None]:
    """A recorded accuracy with its 95% interval, count and chance level (None where not recorded)."""
    return {"value": _finite(extra.get(name)), "low": _finite(extra.get(f"{name}_ci_low")),
            "high": _finite(extra.get(f"{name}_ci_high")), "n": extra.get(f"{name}_n"),
            "chance": _finite(extra.get(f"{name}_chance"))}


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


class DashboardData:
    """Read-only view of one workspace's registry for the dashboard, the report and notebooks."""

    def __init__(self, registry: ModelRegistry, workspace: Workspace | None = None) -> None:
        self.registry = registry
        self.workspace = workspace

    @classmethod
    def open(cls, root: str | Path | None = None) -> DashboardData:
        """Open a workspace's registry read-only; a workspace without a registry raises RegistryError."""
        workspace = Workspace(root, create=False)
        return cls(ModelRegistry(workspace.registry_path, readonly=True), workspace)

    def close(self) -> None:
        self.registry.close()

    # sessions -------------------------------------------------------------------------------------------
    def sessions(self) -> list[dict[str, Any]]:
        """Every session, newest first, with progress, model count, last activity and whether it is live."""
        activity, counts = self.registry.session_activity(), self.registry.model_counts()
        rows = []
        for row in self.registry.list_sessions():
            row.pop("pipeline_config_json", None)
            sid = row["session_id"]
            last = activity.get(sid, {}).get("last_metric")
            row["last_activity"] = (datetime.fromtimestamp(last, timezone.utc).isoformat(timespec="seconds")
                                    if last else None)
            row["n_metrics"] = activity.get(sid, {}).get("n_metrics", 0)
            row["n_models"] = counts.get(sid, 0)
            row["progress_percent"] = row.get("progress_percent") or 0.0
            row["process_alive"] = self.process_alive(sid)
            rows.append(row)
        return rows

    def session(self, session_id: str) -> dict[str, Any]:
        row = self.registry.get_session(session_id)
        row.pop("pipeline_config_json", None)
        row["process_alive"] = self.process_alive(session_id)
        return row

    def session_config(self, session_id: str) -> dict[str, Any]:
        """The session's validated configuration as plain JSON values."""
        return self.registry.session_config(session_id).model_dump(mode="json")

    def process_alive(self, session_id: str) -> bool | None:
        """True while a pipeline process holds the session's lock (None when it cannot be told)."""
        if self.workspace is None:
            return None
        return lock_held(self.workspace.session_dir(session_id) / ".lock")

    def is_live(self, session_id: str) -> bool:
        """Worth auto-refreshing: marked running and (where it can be told) still held by a process."""
        row = self.registry.get_session(session_id)
        return row["status"] == "running" and self.process_alive(session_id) is not False

    # phases ---------------------------------------------------------------------------------------------
    def timeline(self, session_id: str, now: datetime | None = None) -> list[PhaseRow]:
        """The eight phases in order; a running phase's duration counts up to ``now``."""
        now = now or datetime.now(timezone.utc)
        runs = {r["phase_name"]: r for r in self.registry.phase_runs(session_id)}
        handoffs = {h["source_phase"]: h for h in self.registry.handoff_history(session_id)}
        rows = []
        for index, phase in enumerate(PHASE_NAMES):
            run = runs.get(phase, {})
            row = PhaseRow(index, phase, run.get("status") or "pending", run.get("started_at"),
                           run.get("ended_at"), run.get("duration_seconds"),
                           list(run.get("output_models") or []), error=run.get("error"))
            start, end = parse_time(row.started_at), parse_time(row.ended_at)
            if row.duration_s is None and start is not None:
                row.duration_s = ((end or now) - start).total_seconds()
            if phase in handoffs:
                hand = handoffs[phase]
                row.handoff, row.handoff_target = hand["validation_status"], hand["target_phase"]
                row.handoff_checks = list((hand.get("checks") or {}).get("checks") or [])
            rows.append(row)
        return rows

    def phase_results(self, session_id: str) -> dict[str, dict[str, Any]]:
        """Each recorded phase's own result figures (PhaseResult.metrics), by phase name."""
        return {r["phase_name"]: dict(r.get("metrics") or {}) for r in self.registry.phase_runs(session_id)}

    def trajectory(self, session_id: str) -> list[dict[str, Any]]:
        """D6: the held-out figures before and after each recorded phase, with what got worse."""
        history = self.registry.handoff_history(session_id)
        handoffs = {h["source_phase"]: h["validation_status"] for h in history}
        rows = []
        for run in self.registry.phase_runs(session_id):
            before, after = run.get("before") or {}, run.get("after") or {}
            row: dict[str, Any] = {"phase": run["phase_name"], "status": run["status"],
                                   "seconds": run.get("duration_seconds"),
                                   "handoff": handoffs.get(run["phase_name"])}
            worse = []
            for name in TRAJECTORY_FIELDS:
                row[f"before_{name}"], row[name] = _finite(before.get(name)), _finite(after.get(name))
                b, a = row[f"before_{name}"], row[name]
                if a is not None and b is not None and a != b and (a > b) == LOWER_IS_BETTER[name]:
                    worse.append(name)
            row["worse"] = worse
            row["accuracy_interval"] = _interval(after.get("extra") or {}, "accuracy")
            row["kinds"] = {kind: _interval(after.get("extra") or {}, f"accuracy_{kind}") for kind in TASK_KINDS
                            if (after.get("extra") or {}).get(f"accuracy_{kind}") is not None}
            row["think"] = _interval(after.get("extra") or {}, "think_accuracy_arith")
            row["tools"] = _interval(after.get("extra") or {}, "tools_accuracy_arith")
            rows.append(row)
        return rows

    # metrics --------------------------------------------------------------------------------------------
    def metric_phases(self, session_id: str) -> list[str]:
        """Phases that logged metrics, in pipeline order."""
        found = self.registry.metric_phases(session_id)
        return [p for p in PHASE_NAMES if p in found] + sorted(found - set(PHASE_NAMES))

    def metric_series(self, session_id: str, phase: str | None = None, name: str | None = None,
                      max_points: int = 2000) -> list[Series]:
        """Every (phase, model, metric) curve; long curves are thinned to ``max_points`` (last kept)."""
        grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
        for row in self.registry.metrics(session_id, phase=phase, name=name):
            if row["value"] is not None:
                grouped[(row["phase"], row["model"], row["name"])].append(row)
        out = []
        for (ph, model, metric), rows in grouped.items():
            if len(rows) > max_points:
                stride = math.ceil(len(rows) / max_points)
                rows = rows[::stride] + ([rows[-1]] if (len(rows) - 1) % stride else [])
            out.append(Series(ph, model, metric, [r["step"] for r in rows], [r["value"] for r in rows],
                              [r["time"] or 0.0 for r in rows]))
        order = {p: i for i, p in enumerate(PHASE_NAMES)}
        out.sort(key=lambda s: (order.get(s.phase, len(order)), s.model, s.name))
        return out

    def final_values(self, session_id: str, phase: str) -> list[dict[str, Any]]:
        return final_rows(self.metric_series(session_id, phase))

    def model_curves(self, model_id: str) -> list[Series]:
        """Curves logged under a model's own name in the phase that made it (its training run)."""
        row = self.registry.get_model(model_id)
        return [s for s in self.metric_series(row["session_id"], row["phase_name"])
                if s.model == row["model_name"]]

    def compare_curves(self, model_a: str, model_b: str) -> list[ChartGroup]:
        """One chart per metric both models logged, each model a trace (labelled by its id)."""
        curves = {f"A {model_a.rpartition('__')[2]}": self.model_curves(model_a),
                  f"B {model_b.rpartition('__')[2]}": self.model_curves(model_b)}
        first, second = curves.values()
        shared = {s.name for s in first} & {s.name for s in second}
        groups = []
        for name in sorted(shared, key=lambda n: (_priority(n), n)):
            traces = [Trace(label, s) for label, items in curves.items() for s in items if s.name == name]
            if all(len(t.series.steps) > 1 for t in traces):
                groups.append(ChartGroup("compare", name, f"{name}: A vs B", traces))
        return groups

    def champion(self, session_id: str, phase: str) -> dict[str, Any]:
        """Figures naming the champion (combo id, binary code, fitness) from results and metrics."""
        found = {k: v for k, v in self.phase_results(session_id).get(phase, {}).items() if "champion" in k}
        for item in self.metric_series(session_id, phase):
            if "champion" in item.name:
                found.setdefault(item.name, item.last)
        return found

    def compression_curve(self, session_id: str) -> list[dict[str, Any]]:
        """Phase 8's size/quality points (its candidates, its file, the plain baselines) of the session's
        final model; empty before Phase 8 has run or for a model written before the curve was recorded."""
        finals = self.models(session_id, phase="final")
        return list(finals[-1]["metadata"].get("size_quality") or []) if finals else []

    # models ---------------------------------------------------------------------------------------------
    def models(self, session_id: str | None = None, phase: str | None = None) -> list[dict[str, Any]]:
        return self.registry.search_models(phase=phase, session=session_id)

    def model(self, model_id: str) -> dict[str, Any]:
        return self.registry.get_model(model_id)

    def lineage(self, model_id: str) -> Lineage:
        """All ancestors and descendants of a model through the registry's parent links."""
        self.registry.get_model(model_id)
        edges: set[tuple[str, str]] = set()
        for direction in ("up", "down"):
            frontier, seen = [model_id], {model_id}
            while frontier:
                node = frontier.pop()
                links = self._links(node, direction)
                edges.update(links)
                for nxt in (p if direction == "up" else c for p, c in links):
                    if nxt not in seen:
                        seen.add(nxt)
                        frontier.append(nxt)
        ids = {model_id} | {p for p, _ in edges} | {c for _, c in edges}
        return Lineage(model_id, {i: self._node(i) for i in ids}, sorted(edges))

    def _links(self, node: str, direction: str) -> list[tuple[str, str]]:
        if direction == "up":
            return [(peer, node) for peer in self.registry.parent_ids(node)]
        return [(node, peer) for peer in self.registry.child_ids(node)]

    def _node(self, model_id: str) -> dict[str, Any]:
        try:
            row = self.registry.get_model(model_id)
        except NotFoundError:
            return {"model_id": model_id, "phase_name": "?", "model_name": model_id, "missing": True}
        return {k: row[k] for k in ("model_id", "phase_name", "model_name", "parameters", "size_mb")}

    def compare(self, model_a: str, model_b: str) -> list[dict[str, Any]]:
        """Side by side: registry columns, then every scalar metadata key either model has (with B - A)."""
        a, b = self.registry.get_model(model_a), self.registry.get_model(model_b)
        rows = [_compare_row(key, a.get(key), b.get(key))
                for key in ("session_id", "phase_name", "model_name", "parameters", "size_mb", "created_at")]
        rows.append(_compare_row("parents", ", ".join(a["parents"]), ", ".join(b["parents"])))
        rows.append(_compare_row("tags", ", ".join(a["tags"]), ", ".join(b["tags"])))
        meta_a, meta_b = a["metadata"], b["metadata"]
        skip = {"files", "param_breakdown", "model_id", "session_id", "phase", "parents", "parameters"}
        for key in sorted((set(meta_a) | set(meta_b)) - skip):
            va, vb = meta_a.get(key), meta_b.get(key)
            if not isinstance(va, (dict, list)) and not isinstance(vb, (dict, list)):
                rows.append(_compare_row(f"metadata.{key}", va, vb))
        return rows

    def artifact_metadata(self, model_id: str) -> dict[str, Any]:
        """The artifact's own ``metadata.json`` (with the file checksums), read without touching the folder.

        ``storage.artifacts.read_metadata`` first tidies interrupted writes next to the folder; a reader
        running beside the pipeline must never do that, so this only reads.
        """
        folder = Path(self.registry.get_model(model_id)["model_path"])
        path = folder / METADATA
        if not path.is_file():
            raise ArtifactCorruptError(f"model {model_id} has no {path}", "re-run the phase that produced it")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArtifactCorruptError(f"{path} is unreadable ({exc.__class__.__name__})",
                                       "re-run the phase that produced it") from None
        return data if isinstance(data, dict) else {}

    def model_files(self, model_id: str) -> dict[str, str]:
        """File name -> sha256 of a model's artifact ({} when its folder is gone)."""
        try:
            return dict(self.artifact_metadata(model_id).get("files") or {})
        except ArtifactCorruptError:
            return {}

    def model_ref(self, model_id: str) -> ModelRef:
        """A ModelRef whose files all match their checksums, for ``phases.common.load_model`` (read-only)."""
        row = self.registry.get_model(model_id)
        folder = Path(row["model_path"])
        metadata = self.artifact_metadata(model_id)
        expected = row.get("metadata_sha256")
        if expected and sha256_file(folder / METADATA) != expected:
            raise ArtifactCorruptError(f"{folder / METADATA} was modified after it was registered",
                                       "re-run the phase that produced it or restore the folder")
        for name, digest in (metadata.get("files") or {}).items():
            if not (folder / name).is_file() or sha256_file(folder / name) != digest:
                raise ArtifactCorruptError(f"{folder / name} is missing or does not match its checksum",
                                           "re-run the phase that produced it or restore the file")
        return ModelRef(model_id, folder, metadata, row.get("parameters") or 0, row.get("size_mb") or 0.0)


# The class's name before issue 20 ("forge" also names the project, the model family and Phase 5): notebooks
# written against it keep working.
ForgeData = DashboardData


def final_rows(series: list[Series]) -> list[dict[str, Any]]:
    """The last value of every curve (one row per phase, model and name), for tables."""
    return [{"phase": s.phase, "model": s.model, "name": s.name, "step": s.steps[-1], "value": s.last,
             "points": len(s.steps)} for s in series]


def _compare_row(name: str, a: Any, b: Any) -> dict[str, Any]:
    fa, fb = _finite(a), _finite(b)
    delta = fb - fa if fa is not None and fb is not None else None
    return {"field": name, "a": a, "b": b, "delta": delta, "same": a == b}
