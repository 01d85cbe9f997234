"""`agent-forge eval`: held-out accuracy of a registered model or an edge bundle, with intervals and baselines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from agent_forge.cli.app import JsonOpt, PresetOpt, SetOpt, app, open_workspace
from agent_forge.cli.render import print_json, print_table
from agent_forge.config.schema import PipelineConfig
from agent_forge.errors import ConfigError, NotFoundError

DataOpt = Annotated[str | None, typer.Option(
    "--data", help="builtin (the session's D6 held-out set, the default), tools (held-out bare calculations "
                   "and unit conversions, the tools' own tasks) or KIND:PATH with KIND one of "
                   "arc_easy, gsm8k, mbpp, piqa, svamp and PATH a local JSON/JSONL/Parquet file in the Hub's format.")]


@app.command("eval")
def eval_command(
    model_id: Annotated[str | None, typer.Argument(help="Model id (see `agent-forge models`).")] = None,
    bundle: Annotated[Path | None, typer.Option("--bundle", help="Score an edge bundle folder instead.")] = None,
    mode: Annotated[str, typer.Option("--mode", help="direct (answer at once), think, or tools (think with "
                                                    "the tool runtime executing calls).")] = "direct",
    prompt: Annotated[str | None, typer.Option("--prompt", help="Think/tools: a prompt read before every task, "
                                               "builtin:tools, builtin:persona or a prompt file.")] = None,
    kinds: Annotated[str | None, typer.Option("--kinds", help="Comma-separated: arith,mc,code.")] = None,
    levels: Annotated[str | None, typer.Option("--levels", help="Comma-separated levels, e.g. 1,2.")] = None,
    n: Annotated[int | None, typer.Option("--n", min=1, help="Tasks, spread evenly over kinds and levels.")] = None,
    data: DataOpt = None,
    preset: PresetOpt = "tiny",
    set_: SetOpt = None,
    lm_eval_task: Annotated[Path | None, typer.Option(
        "--lm-eval-task", help="Also write the items scored as an lm-evaluation-harness task into this folder "
                               "(and print the lm_eval command that scores them the same way).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Exact-match accuracy overall, per kind and per level, with counts, Wilson 95% intervals, the chance
    level and the majority baseline. A bundle is scored with the --preset's held-out set, a model with its
    session's (`--set data.heldout_examples=N` draws more of the same split; the first are D6's)."""
    from agent_forge.config import load_config
    from agent_forge.eval.suite import MODES

    if mode not in MODES:
        raise ConfigError(f"unknown mode '{mode}'", f"use one of {', '.join(MODES)}")
    if (model_id is None) == (bundle is None):
        raise ConfigError("give a model id or --bundle PATH (one of them)", "see `agent-forge eval --help`")
    if lm_eval_task is not None and mode != "direct":
        raise ConfigError("--lm-eval-task scores direct answers", "drop --mode or use --mode direct")
    model, tokenizer, config, label = (_bundle_model(bundle, load_config(preset, overrides=set_)) if bundle
                                       else _registered_model(model_id, set_))
    examples = _examples(config, data)
    if prompt is not None and mode == "direct":
        raise ConfigError("--prompt needs --mode think or tools", "add --mode tools (or think), or drop --prompt")
    prefix = _prompt_ids(tokenizer, prompt)
    report = _score(model, tokenizer, config, examples, _kinds(kinds), _levels(levels), n, mode, prefix)
    report = {"model": label, "mode": mode, "prompt": prompt, "data": data or "builtin", **report}
    if lm_eval_task is not None:
        report["lm_eval"] = _write_lm_eval_task(lm_eval_task, tokenizer, config, report.pop("scored"), bundle,
                                                label)
    report.pop("scored", None)
    if as_json:
        print_json(report)
    else:
        _print_report(report, label, mode)


def _print_report(report: dict, label: str, mode: str) -> None:
    """The accuracy table, then the mode's own figures and the lm-eval task, as lines of text."""
    print_table(f"{label}: {mode} answers, {report['n']} tasks", ACCURACY_COLUMNS, accuracy_rows(report),
                compact=True)
    if mode == "think":
        figures = report["thinking"]["overall"]
        typer.echo(f"thought on {figures['think_rate']:.3f} of the tasks, valid {figures['validity_rate']:.3f}; "
                   f"where it thought: {figures['own_thought_accuracy']:.3f} right with its own thought, "
                   f"{figures['corrupted_thought_accuracy']:.3f} with the digits corrupted; "
                   f"direct on all: {report['direct']['overall']['accuracy']:.3f}")
        if figures["tool_call_rate"]:
            typer.echo(f"{figures['tool_call_rate']:.3f} of its thoughts call a tool, which think mode does not "
                       "run: --mode tools runs them")
    if "lm_eval" in report:
        typer.echo(f"lm-eval task ({report['lm_eval']['n']} items): {report['lm_eval']['task']}")
        if report["lm_eval"]["command"]:
            typer.echo(f"score it with lm-evaluation-harness: {report['lm_eval']['command']}")
    if mode == "tools":
        typer.echo(tool_summary(report))
        for name, figures in report["by_tool"].items():  # bare tool tasks (--data tools): per tool
            entry = figures["accuracy"]
            typer.echo(f"{name} tasks: accuracy {entry['accuracy']:.3f} ({entry['ci_low']:.3f}-"
                       f"{entry['ci_high']:.3f}) of {entry['n']}")


def tool_summary(report: dict) -> str:
    """One line of tools-mode figures: each share with its 95% interval, then direct accuracy."""
    figures = report["tools"]["overall"]
    parts = [f"{name.removesuffix('_rate').replace('_', ' ')} {entry['accuracy']:.3f} "
             f"({entry['ci_low']:.3f}-{entry['ci_high']:.3f})" for name, entry in figures.items()]
    return "; ".join(parts) + f"; direct {report['direct']['overall']['accuracy']:.3f}"


def _prompt_ids(tokenizer: Any, spec: str | None) -> list[int]:
    """The ids of ``--prompt`` (``builtin:NAME`` or a prompt file), or none."""
    if spec is None:
        return []
    from agent_forge.baking.prompts import load_prompt

    return tokenizer.encode(load_prompt(spec, setting="--prompt").text)


ACCURACY_COLUMNS = ["kind", "level", "n", "acc", "95% CI", "chance", "majority"]


def accuracy_rows(report: dict) -> list[list[Any]]:
    """Table rows of an ``accuracy_table``: overall, then each kind and its levels."""
    def row(kind: str, level: str, entry: dict) -> list[Any]:
        return [kind, level, entry["n"], f"{entry['accuracy']:.3f}",
                f"{entry['ci_low']:.3f}-{entry['ci_high']:.3f}", f"{entry['chance']:.3f}", f"{entry['majority']:.3f}"]

    rows = [row("all", "all", report["overall"])]
    for kind, entry in report["kinds"].items():
        rows.append(row(kind, "all", entry))
        rows += [row("", str(level), inner) for level, inner in entry["levels"].items()]
    return rows


def _kinds(text: str | None) -> list[str] | None:
    from agent_forge.data.tasks import TASK_KINDS

    if not text:
        return None
    wanted = [k.strip() for k in text.split(",") if k.strip()]
    unknown = [k for k in wanted if k not in TASK_KINDS]
    if unknown:
        raise ConfigError(f"unknown kind '{unknown[0]}'", f"use kinds from {', '.join(TASK_KINDS)}")
    return wanted


def _levels(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        return [int(level) for level in text.split(",") if level.strip()]
    except ValueError as exc:
        raise ConfigError(f"--levels '{text}' is not a list of whole numbers", "write e.g. --levels 1,2") from exc


def _registered_model(model_id: str, overrides: list[str] | None) -> tuple[Any, Any, PipelineConfig, str]:
    from agent_forge.model_io import load_model, load_ref, load_tokenizer

    _, registry = open_workspace(create=False)
    config = registry.session_config(registry.get_model(model_id)["session_id"])
    ref = load_ref(registry, model_id)
    return load_model(ref), load_tokenizer(ref), larger_heldout(config, overrides), model_id


def larger_heldout(config: PipelineConfig, overrides: list[str] | None) -> PipelineConfig:
    """A registered model is scored with its session's config; the one override it takes is
    ``data.heldout_examples`` at least the session's: a larger draw from the same held-out split, whose
    first tasks are the session's D6 set (claims that need more tasks of a kind than D6 holds)."""
    from agent_forge.config.loader import parse_override

    fix = f"use only --set data.heldout_examples=N with N >= {config.data.heldout_examples} on a registered model"
    size = config.data.heldout_examples
    for item in overrides or []:
        value = parse_override(item)
        if set(value) != {"data"} or set(value["data"]) != {"heldout_examples"}:
            raise ConfigError(f"--set {item} would change the session the model was trained in", fix)
        size = value["data"]["heldout_examples"]
        if not isinstance(size, int) or isinstance(size, bool) or size < config.data.heldout_examples:
            raise ConfigError(f"--set {item}: the held-out set can only grow", fix)
    return config.model_copy(update={"data": config.data.model_copy(update={"heldout_examples": size})})


def _bundle_model(folder: Path, config: PipelineConfig) -> tuple[Any, Any, PipelineConfig, str]:
    from agent_forge.data.tokenizer import ForgeTokenizer
    from agent_forge.export.evaluation import RuntimeLM
    from agent_forge.export.runtime import load_bundle

    if not (folder / "manifest.json").is_file():
        raise NotFoundError(f"{folder} is not a bundle (no manifest.json)",
                            "give the folder that `agent-forge export` wrote")
    try:
        bundle = load_bundle(folder)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"bundle {folder} cannot be loaded: {exc}", "re-export it with `agent-forge export`") from exc
    return RuntimeLM(bundle.model), ForgeTokenizer.load(folder), config, str(folder)


def _examples(config: PipelineConfig, data: str | None) -> list[Any]:
    """The session's D6 held-out set, the held-out tool tasks, or a file's held-out rows (all rows when
    training never read it)."""
    from agent_forge.data.sources import SourceConfig, heldout_examples, load_source
    from agent_forge.data.tasks import split_of
    from agent_forge.tools.tasks import tool_tasks

    if data is None or data == "builtin":
        return heldout_examples(config)
    if data == "tools":  # training reads the other split of these (the demonstrations' bare tasks)
        return tool_tasks(config.data.heldout_examples, config.data.seed, "heldout")
    kind, _, path = data.partition(":")
    if kind not in ("arc_easy", "gsm8k", "mbpp", "piqa", "svamp") or not path:
        raise ConfigError(f"--data '{data}' is not builtin, tools or KIND:PATH", "write e.g. --data gsm8k:test.jsonl")
    rows = load_source(SourceConfig(name=kind, kind=kind, path=path))
    trained = any(s.path and Path(s.path).resolve() == Path(path).resolve() for s in config.data.sources)
    return [e for e in rows if split_of(e.uid) == "heldout"] if trained else rows


def _score(model: Any, tokenizer: Any, config: PipelineConfig, examples: list[Any], kinds: list[str] | None,
           levels: list[int] | None, n: int | None, mode: str = "direct", prefix: list[int] | None = None) -> dict:
    from agent_forge.eval.suite import score_examples, select_examples
    from agent_forge.reasoning.think_mode import think_report
    from agent_forge.reasoning.tools_mode import tools_report

    chosen = select_examples(examples, kinds, levels, n)
    if not chosen:
        raise NotFoundError("no task matches --kinds/--levels in this data", "widen --kinds or --levels")
    if mode == "think":
        return think_report(model, tokenizer, chosen, config.data.seq_len, config.quietstar.max_thought_tokens,
                            prefix=prefix or ())
    if mode == "tools":
        return tools_report(model, tokenizer, chosen, config.data.seq_len, config.quietstar.max_thought_tokens,
                            prefix=prefix or ())
    return {**score_examples(model, tokenizer, chosen, config.data.seq_len), "scored": chosen}


def _write_lm_eval_task(folder: Path, tokenizer: Any, config: PipelineConfig, chosen: list[Any],
                        bundle: Path | None, model_id: str) -> dict[str, Any]:
    """The lm-eval task of the items ``score_examples`` scored (those the held-out set keeps) and the
    command that scores a registered model's folder on it."""
    from agent_forge.eval.heldout import HeldoutSet
    from agent_forge.eval.lm_eval_task import lm_eval_command, write_lm_eval_task

    scored = HeldoutSet.build(tokenizer, chosen, config.data.seq_len, max_lm_sequences=1).examples
    task = write_lm_eval_task(scored, folder)
    command = None
    if bundle is None:  # a bundle has no Hugging Face folder for lm_eval's `hf` model
        _, registry = open_workspace(create=False)
        command = lm_eval_command(Path(registry.get_model(model_id)["model_path"]), folder, config.data.seq_len)
    return {"task": str(task), "n": len(scored), "command": command}
