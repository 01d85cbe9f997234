"""A comparable picture of one session's registry contents.

Two runs of the same configuration (one interrupted and resumed, one not) must end with the same registry.
Session ids, timestamps, durations and wall-clock figures legitimately differ, so they are normalised away;
everything else (models, weights' checksums, lineage, hand-offs, phase outcomes, metric values) is kept.
"""

from __future__ import annotations

from typing import Any

from agent_forge.storage.registry import ModelRegistry

VOLATILE_MARKS = ("seconds", "time", "system/", "per_s", "tokens_s", "latency", "_ms", "ms_per", "speed",
                  "throughput", "rss", "memory_mb", "peak")
# Folder sizes include metadata/manifest files that carry measured timings, whose printed length can differ by
# a byte between runs: sizes are compared to the kilobyte.
SIZE_DIGITS = 3


def is_volatile(name: str) -> bool:
    lowered = name.lower()
    return any(mark in lowered for mark in VOLATILE_MARKS)


def _strip(value: Any, session_id: str, key: str = "") -> Any:
    if isinstance(value, float) and key.endswith("size_mb"):
        return round(value, SIZE_DIGITS)
    if isinstance(value, str):
        return value.replace(session_id, "<session>")
    if isinstance(value, list):
        return [_strip(v, session_id) for v in value]
    if isinstance(value, dict):
        return {k: _strip(v, session_id, k) for k, v in value.items() if not is_volatile(k)}
    return value


def registry_snapshot(registry: ModelRegistry, session_id: str, digits: int = 6) -> dict[str, Any]:
    models = {
        m["model_name"] + "@" + m["phase_name"]: _strip(
            {"parameters": m["parameters"], "tags": m["tags"], "parents": m["parents"],
             "files": m["metadata"].get("files", {})}, session_id)
        for m in registry.search_models(session=session_id)
    }
    handoffs = [(h["source_phase"], h["target_phase"], h["validation_status"])
                for h in registry.handoff_history(session_id)]
    phases = [_strip({"phase": r["phase_name"], "status": r["status"], "outputs": r.get("output_models"),
                      "metrics": r.get("metrics")}, session_id) for r in registry.phase_runs(session_id)]
    metrics = sorted(
        (r["phase"], r["model"], r["step"], r["name"], round(r["value"], digits))
        for r in registry.metrics(session_id) if not is_volatile(r["name"])
    )
    return {"models": models, "handoffs": sorted(handoffs), "phases": phases, "metrics": metrics}


def snapshot_difference(expected: dict[str, Any], actual: dict[str, Any]) -> dict[str, Any]:
    """What two snapshots disagree on, small enough to read in a failure message: per part, the models whose
    entries differ (both sides shown) or the rows of a list that only one side has; empty when they agree."""
    difference: dict[str, Any] = {}
    for part in sorted(set(expected) | set(actual)):
        mine, theirs = expected.get(part), actual.get(part)
        if mine == theirs:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            names = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
            difference[part] = {name: {"expected": mine.get(name), "actual": theirs.get(name)} for name in names}
        elif isinstance(mine, list) and isinstance(theirs, list) and _paired_rows(mine, theirs):
            difference[part] = {f"{i}:{row.get('phase', '')}": _changed_keys(row, theirs[i])
                                for i, row in enumerate(mine) if row != theirs[i]}
        elif isinstance(mine, list) and isinstance(theirs, list):
            missing = [row for row in mine if row not in theirs]
            extra = [row for row in theirs if row not in mine]
            difference[part] = {"missing": missing, "extra": extra} if missing or extra else "order differs"
        else:
            difference[part] = {"expected": mine, "actual": theirs}
    return difference


def _paired_rows(mine: list[Any], theirs: list[Any]) -> bool:
    """Two lists of dict rows that match one to one by phase (phase runs): a difference is a few keys."""
    return (len(mine) == len(theirs) and all(isinstance(r, dict) for r in [*mine, *theirs])
            and [r.get("phase") for r in mine] == [r.get("phase") for r in theirs])


def _changed_keys(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
    """The keys two dict rows disagree on (nested dicts, such as a phase's metrics, key by key)."""
    changed: dict[str, Any] = {}
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if a == b:
            continue
        both_dicts = isinstance(a, dict) and isinstance(b, dict)
        changed[key] = _changed_keys(a, b) if both_dicts else {"expected": a, "actual": b}
    return changed
