"""The model card of an exported model: who it descends from, what it learned from, how well it does, what
it is for. Every figure comes from the registry (the model's row, its ancestors' rows, the D6 record of the
phase that made it, the session's configuration) or from the bundle's own measurements; nothing is typed in.

``gather_card`` reads a registry (any object with ``get_model``, ``parent_ids``, ``get_session``,
``session_config`` and ``phase_runs``; this module imports no storage code) into plain JSON facts, which
travel in the bundle's manifest; ``render_card`` turns facts plus the bundle summary into Markdown.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from typing import Any

MODES = (("direct", "accuracy_"), ("think", "think_accuracy_"),
         ("tools", "tools_accuracy_"))  # D6 record keys of each answering mode
NOT_KINDS = {"rate", "n", "chance", "majority"}  # suffixes under the same prefixes that are not task kinds
PROJECT = "agent-forge"


def project_license() -> str:
    """The license of the installed Agent Forge package, as its metadata states it."""
    try:
        meta = importlib.metadata.metadata(PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return "unknown (Agent Forge is not installed as a package; see the project's pyproject.toml)"
    return meta.get("License-Expression") or meta.get("License") or "unknown (no license in the package metadata)"


def _ancestors(registry: Any, model_id: str) -> list[dict[str, Any]]:
    """Every model the given one came from, through the registry's parent links (breadth first)."""
    seen: dict[str, dict[str, Any]] = {}
    distance: dict[str, int] = {}
    frontier = [(parent, 1) for parent in registry.parent_ids(model_id)]
    while frontier:
        parent, steps = frontier.pop(0)
        if parent in seen or parent == model_id:
            continue
        row = registry.get_model(parent)
        seen[parent], distance[parent] = _lineage_row(row), steps
        frontier.extend((grand, steps + 1) for grand in row["parents"])
    # oldest first; models written within the same millisecond: the farther ancestor first
    return sorted(seen.values(), key=lambda r: (str(r["created_at"]), -distance[r["model_id"]], r["model_id"]))


def _lineage_row(row: dict[str, Any]) -> dict[str, Any]:
    return {"model_id": row["model_id"], "phase": row["phase_name"], "name": row["model_name"],
            "created_at": row["created_at"], "parents": list(row["parents"]), "size_mb": row["size_mb"],
            "size_counts": row.get("size_counts")}


def _record_of(registry: Any, row: dict[str, Any]) -> dict[str, Any]:
    """The D6 'after' record of the phase run that produced the model, with the run's output models."""
    for run in registry.phase_runs(row["session_id"]):
        if run["phase_name"] == row["phase_name"]:
            return {"after": run.get("after") or {}, "outputs": list(run.get("output_models") or [])}
    return {"after": {}, "outputs": []}


def gather_card(registry: Any, model_id: str) -> dict[str, Any]:
    """The facts of a model card, as JSON values, from the registry."""
    row = registry.get_model(model_id)
    session = registry.get_session(row["session_id"])
    config = registry.session_config(row["session_id"]).model_dump(mode="json")
    return {"model": _lineage_row(row) | {"parameters": row["parameters"]},
            "lineage": _ancestors(registry, model_id), "record": _record_of(registry, row),
            "session": {"session_id": session["session_id"], "preset": session["preset"]},
            "data": config.get("data", {}), "shape": config.get("model", {}), "license": project_license(),
            "metadata": {k: v for k, v in row["metadata"].items() if k in ("baked_prompts", "thinking_tokens")}}


# ---- rendering -----------------------------------------------------------------------------------------

def _table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _with_interval(extra: dict[str, Any], key: str) -> str:
    value = extra.get(key)
    if not isinstance(value, (int, float)):
        return "not measured"
    low, high = extra.get(f"{key}_ci_low"), extra.get(f"{key}_ci_high")
    shown = f"{value:.3f}"
    if isinstance(low, (int, float)) and isinstance(high, (int, float)):
        shown += f" ({low:.3f}-{high:.3f})"
    n = extra.get(f"{key}_n")
    return shown + (f", n={int(n)}" if isinstance(n, (int, float)) else "")


def recorded_kinds(extra: dict[str, Any]) -> list[str]:
    """Task kinds with an accuracy in any mode of a D6 record's ``extra`` (in order of first mention)."""
    kinds: list[str] = []
    for _, prefix in MODES:
        for key in extra:
            rest = key.removeprefix(prefix) if key.startswith(prefix) else None
            if rest and "_" not in rest and rest not in NOT_KINDS and not rest.startswith("level") \
                    and rest not in kinds:
                kinds.append(rest)
    return kinds


def accuracy_section(record: dict[str, Any]) -> str:
    """Accuracy overall and per kind, each mode the record holds, with 95% intervals, chance and majority."""
    after = record.get("after") or {}
    extra = {**(after.get("extra") or {}), "accuracy": after.get("accuracy")}
    if after.get("accuracy") is None:
        return "No held-out record for this model in the registry."
    modes = [name for name, prefix in MODES if any(k.startswith(prefix) for k in extra)] or ["direct"]
    head = ["task kind", *[f"{m} mode (95% CI)" for m in modes], "chance", "majority baseline"]
    rows = [["all", *[_with_interval(extra, "accuracy") if m == "direct" else "-" for m in modes],
             _short(extra.get("accuracy_chance")), "-"]]
    for kind in recorded_kinds(extra):
        cells = [_with_interval(extra, f"{prefix}{kind}") for name, prefix in MODES if name in modes]
        rows.append([kind, *cells, _short(extra.get(f"accuracy_{kind}_chance")),
                     _short(extra.get(f"accuracy_{kind}_majority"))])
    lines = [_table(head, rows), "", f"Held-out perplexity {_short(after.get('perplexity'))}, "
             f"bits per byte {_short(after.get('bits_per_byte'))}."]
    if "think" not in modes:
        lines.append("Think mode was not measured for this model (the phase that made it records direct "
                     "answers only).")
    return "\n".join(lines)


def _short(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def lineage_section(card: dict[str, Any]) -> str:
    model = card["model"]
    rows = [[r["phase"], r["name"], f"`{r['model_id']}`", ", ".join(f"`{p}`" for p in r["parents"]) or "-"]
            for r in [*card["lineage"], model]]
    return _table(["phase", "model", "id", "made from"], rows)


def data_section(card: dict[str, Any]) -> str:
    data = card["data"]
    sources = [[s.get("name"), s.get("kind"), s.get("hub_id") or s.get("path") or "generated locally",
                s.get("weight"), s.get("max_examples") or "all"] for s in data.get("sources", [])]
    lines = [_table(["source", "kind", "from", "weight", "examples"], sources), "",
             f"Task kinds {', '.join(data.get('kinds', []))}, levels 1-{data.get('max_level')}; "
             f"{data.get('train_examples')} training examples, a held-out set of {data.get('heldout_examples')} "
             f"tasks and {data.get('heldout_lm_sequences')} text rows (never trained on), sequences of "
             f"{data.get('seq_len')} tokens, seed {data.get('seed')}."]
    if data.get("thought_share"):
        lines.append(f"Share of training examples written with a thought: {data['thought_share']}.")
    baked = card.get("metadata", {}).get("baked_prompts")
    if baked:
        lines.append(f"Prompts baked into the weights (Phase 6): {', '.join(baked)}.")
    return "\n".join(lines)


def use_section(card: dict[str, Any]) -> str:
    """Intended use and limits, each limit read from the facts (context, data, accuracy against chance)."""
    shape, data = card["shape"], card["data"]
    sources = ", ".join(sorted({s.get("kind", "?") for s in data.get("sources", [])}))
    use = (f"A small ({card['model']['parameters']:,}-parameter) research and teaching model built by Agent "
           f"Forge's eight-phase pipeline (preset `{card['session']['preset']}`). It answers the task kinds it "
           f"was trained on ({', '.join(data.get('kinds', []))}, from: {sources}) in the prompt format of "
           "those tasks, on a CPU or an edge device, without the training stack.")
    limits = [f"Context: {shape.get('max_seq_len')} tokens trained; longer inputs run (sliding window, "
              "streaming memory) but lie outside what it was trained and measured on.",
              f"Vocabulary: {shape.get('vocab_size')} BPE tokens learned from the training data; other text, "
              "languages and formats are largely out of vocabulary.",
              "Measured only on the held-out tasks above: no factual knowledge, safety tuning or instruction "
              "following beyond them is claimed; its answers can be wrong with full confidence."]
    extra = (card["record"].get("after") or {}).get("extra") or {}
    limits += [note for kind in recorded_kinds(extra) if (note := _baseline_note(extra, kind))]
    return "\n".join([use, "", "Limits:", *[f"- {item}" for item in limits]])


def _baseline_note(extra: dict[str, Any], kind: str) -> str | None:
    """A kind whose direct accuracy is not distinguishable (lower 95% bound) from guessing or from always
    giving the most common answer."""
    value, low = extra.get(f"accuracy_{kind}"), extra.get(f"accuracy_{kind}_ci_low")
    baselines = {name: extra.get(f"accuracy_{kind}_{key}") for name, key in
                 (("chance", "chance"), ("majority baseline", "majority"))}
    known = {name: b for name, b in baselines.items() if isinstance(b, (int, float))}
    if not isinstance(value, (int, float)) or not isinstance(low, (int, float)) or not known:
        return None
    name, baseline = max(known.items(), key=lambda item: item[1])
    if low > baseline:
        return None
    return (f"{kind}: accuracy {value:.3f} (lower 95% bound {low:.3f}) is not distinguishable from the "
            f"{name} ({baseline:.3f}).")


def size_section(card: dict[str, Any], profile: dict[str, dict[str, Any]]) -> str:
    model = card["model"]
    lines = [f"Model size {model['size_mb']:.3f} MB: {model['size_counts']} (the size `agent-forge show` and "
             "the run report give; config, tokenizer and metadata not counted)."]
    files = [[name, f"{p['file_bytes'] / 1e6:.3f}", _short(p.get("decode_ms_per_token"), 2)]
             for name, p in profile.items()]
    if files:
        lines += ["", "Per format, the model file(s) the format loads, and the decode latency measured here "
                  "(batch 1, ms per token):", "", _table(["format", "file MB", "decode ms/token"], files)]
    return "\n".join(lines)


def render_card(card: dict[str, Any] | None, profile: dict[str, dict[str, Any]]) -> str:
    """The card's Markdown sections (a note when the bundle was built outside a registered session)."""
    if not card:
        return ("## Model card\nThis bundle was built outside a registered session: no lineage, data or "
                "held-out figures are known for it.\n")
    record = card["record"]
    outputs = record.get("outputs") or []
    measured = (f"by the {card['model']['phase']} phase on its output" if len(outputs) <= 1 else
                f"by the {card['model']['phase']} phase on its outputs ({len(outputs)} models)")
    parts = [f"## Model card: `{card['model']['model_id']}`",
             f"Phase {card['model']['phase']} of session `{card['session']['session_id']}`, preset "
             f"`{card['session']['preset']}`, {card['model']['parameters']:,} parameters "
             f"({card['shape'].get('num_layers')} layers, width {card['shape'].get('hidden_size')}).",
             "### Lineage (every parent, across phases)", lineage_section(card),
             "### Training data", data_section(card),
             f"### Held-out accuracy (D6 record, measured {measured})", accuracy_section(record),
             "### Size and latency", size_section(card, profile),
             "### Intended use and limits", use_section(card),
             "### License", f"{card['license']} (the license of Agent Forge, which made this model)."]
    return "\n\n".join(parts) + "\n"
