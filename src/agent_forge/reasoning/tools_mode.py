"""Tools mode: think mode with the tool runtime live, so a thought may hold calls that really run.

The model reads a task's body (after an optional prompt, e.g. the tool prompt of a teacher before baking)
and decides by itself whether to open a thought; inside it, every complete call (``<tool>NAME</tool>
<args>ARGS</args>``) is parsed, never evaluated as code, run by ``tools.runtime.ToolRuntime`` within its
size and time limits, and its ``<result>`` inserted; after ``</think>`` the task's cue follows and the
answer is scored by teacher-forced exact match, as in direct and think mode. Figures per task: did it
call, were all its calls well-formed, did a call return the expected result, and was the answer right;
each with its count and Wilson interval.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agent_forge.baking.data import Piece
from agent_forge.data.tasks import EOS_TEXT, TaskExample
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.capability import group_accuracy
from agent_forge.eval.heldout import greedy_writes
from agent_forge.eval.suite import direct_results
from agent_forge.reasoning.strategies import THINK_CLOSE
from agent_forge.reasoning.think_mode import (
    ThinkModeResult,
    evaluate_think_mode,
    mode_report,
    subset_result,
    think_prompt,
)
from agent_forge.reasoning.thoughts import THINK_ID
from agent_forge.tools.calls import parse_calls, results_in, same_answer
from agent_forge.tools.demos import calls_with_results, task_calls
from agent_forge.tools.tasks import TOOL_KIND

TOOL_FIGURES = ("call_rate", "well_formed_rate", "result_correct_rate", "accuracy")


def call_scores(thought: str, expected: str) -> tuple[bool, bool, bool]:
    """(made a call, every call well-formed and at least one, some call returned ``expected``)."""
    parsed = parse_calls(thought)
    made = bool(parsed)
    return made, made and all(p.ok for p in parsed), any(same_answer(r, expected) for r in results_in(thought))


def tool_figures(tasks: Sequence[TaskExample], result: ThinkModeResult) -> dict[str, dict]:
    """Each figure of ``TOOL_FIGURES`` as an accuracy entry (share, count, interval) over ``tasks``."""
    scores = [call_scores(t, str(task.meta.get("result", task.answer.strip())))
              for t, task in zip(result.thoughts, tasks, strict=True)]
    columns = {"call_rate": [s[0] for s in scores], "well_formed_rate": [s[1] for s in scores],
               "result_correct_rate": [s[2] for s in scores], "accuracy": list(result.correct)}
    return {name: group_accuracy(tasks, values).to_dict() for name, values in columns.items()}


@torch.no_grad()
def tools_report(model: torch.nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                 seq_len: int, max_tokens: int, prefix: Sequence[int] = ()) -> dict:
    """``agent-forge eval --mode tools``: the tools-mode accuracy table, the direct one on the same tasks,
    and the tool figures overall and per kind (after ``prefix``, when given: a prompted model)."""
    scored, direct = direct_results(model, tokenizer, examples, seq_len)
    result = evaluate_think_mode(model, tokenizer, scored, direct, max_tokens, prefix=prefix, tools=True)
    report = mode_report(scored, direct, result, max_tokens, ("corrupted_results", "tools"), tool_figures)
    return {**report, "by_tool": figures_by_tool(scored, result)}


def figures_by_tool(tasks: Sequence[TaskExample], result: ThinkModeResult) -> dict[str, dict]:
    """The tool figures of the bare tool tasks per tool they need (calculations apart from conversions);
    empty when there are none (word problems, mc, code)."""
    names = sorted({str(t.meta["tool"]) for t in tasks if t.kind == TOOL_KIND})
    chosen = {name: [i for i, t in enumerate(tasks) if t.kind == TOOL_KIND and t.meta["tool"] == name]
              for name in names}
    return {name: tool_figures([tasks[i] for i in rows], subset_result(result, rows)) for name, rows in chosen.items()}


def reference_pieces(tokenizer: ForgeTokenizer, task: TaskExample, cue: list[int]) -> list[Piece]:
    """A bare tool task's reference demonstration after ``<think>``: each call (written) and its result
    (inserted), ``</think>``, the cue (inserted), the answer and ``<eos>`` (written), as the runtime runs it."""
    texts = [text for call_and_result in calls_with_results(task_calls(task)) for text in call_and_result]
    texts += [THINK_CLOSE, task.answer + EOS_TEXT]
    encoded = tokenizer.encode_batch(texts)
    pieces = [(ids, index % 2 == 0) for index, ids in enumerate(encoded[:-2])]  # call, result, call, ...
    return [*pieces, (encoded[-2], True), (cue, False), (encoded[-1], True)]


def reference_row(tokenizer: ForgeTokenizer, task: TaskExample) -> tuple[list[int], list[bool]]:
    """A bare tool task as tools mode runs it right, and which of its tokens the model writes: the body and
    ``<think>`` (read: a persona-baked model greets before it opens the thought, which tools mode allows)
    and the reference demonstration."""
    ready = think_prompt(tokenizer, task.prompt)
    ids, written = [*ready.ids, THINK_ID], [False] * (len(ready.ids) + 1)
    for piece, writes in reference_pieces(tokenizer, task, ready.cue_ids):
        ids += piece
        written += [writes] * len(piece)
    return ids, written


def references_written(model: torch.nn.Module, rows: Sequence[tuple[list[int], list[bool]]]) -> list[bool]:
    """Per ``reference_row``: would tools mode (greedy) write it exactly, call, answer and ``<eos>``? One
    teacher-forced pass, so it costs what a direct evaluation costs, not a generation."""
    return greedy_writes(model, [ids for ids, _ in rows], [written for _, written in rows])
