"""Think mode: the model decides by itself whether to think, thinks greedily, closes the thought, answers.

For each task the model reads the task's body (the prompt without its answer cue, ``split_prompt``) and
picks its next token greedily. If it is ``<think>`` the model writes its thought greedily until
``</think>`` or the budget, the thought's first token confined to the seven strategy markers that open
every reasoning thought in training (grammar-constrained decoding: think mode runs no tools, and a model
baked with tools would otherwise think in calls, which tools mode runs; D22); then the task's cue follows
and the answer is scored by teacher-forced exact match (equal to greedy decoding), as in direct mode. A task
where the model does not open a thought keeps its direct-mode result: the model chose to answer at once,
which is direct mode.

Anti-theater as a test of use: the same answer is scored again after the model's own thought with every
digit replaced by another one. A thought the answer really reads makes that accuracy fall well below the
own-thought accuracy; a decorative one leaves it where it was.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import BOS_ID, EOS_ID, ForgeTokenizer
from agent_forge.engine import Allowed, InsertHook, decode
from agent_forge.eval.capability import accuracy_table
from agent_forge.eval.suite import direct_results
from agent_forge.reasoning.data import split_prompt
from agent_forge.reasoning.generation import greedy_continue, score_continuations
from agent_forge.reasoning.strategies import STRATEGIES
from agent_forge.reasoning.thoughts import END_THINK_ID, THINK_ID
from agent_forge.tools.calls import TOOL_OPEN, ToolOutcome
from agent_forge.tools.runtime import AnswerCue, ToolRuntime

PREAMBLE_TOKENS = 6  # what a model may write after the body before it opens a thought (" Nova here." is 3)


@dataclass
class ThinkModeResult:
    """Per task, in the order given: did the model think, close in budget, answer right, and answer right
    after its thought with the digits corrupted (thinking tasks only; else the direct result)."""

    opened: list[bool] = field(default_factory=list)
    closed: list[bool] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    corrupted_correct: list[bool] = field(default_factory=list)
    thought_tokens: list[int] = field(default_factory=list)
    thoughts: list[str] = field(default_factory=list)

    def extend(self, other: ThinkModeResult) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


def digit_ids(tokenizer: ForgeTokenizer) -> list[int]:
    """The ten digit tokens (the tokenizer splits numbers one digit per token)."""
    ids = [tokenizer.encode(str(d)) for d in range(10)]
    if any(len(i) != 1 for i in ids):
        raise ValueError("the tokenizer does not hold every digit as one token")
    return [i[0] for i in ids]


def reasoning_opening(tokenizer: ForgeTokenizer) -> Allowed:
    """Think mode's grammar for the engine: right after ``<think>`` only a strategy marker may follow (every
    reasoning thought of the training mix opens with one; a tool call opens with ``<tool>``)."""
    markers = [tokenizer.special_id(s.token) for s in STRATEGIES]
    return lambda row, previous: markers if previous == THINK_ID else None


def corrupt_digits(thought: Sequence[int], digits: Sequence[int], rng: random.Random) -> list[int]:
    """The thought with every digit token replaced by a different digit chosen at random."""
    position = {token: index for index, token in enumerate(digits)}
    return [digits[(position[t] + rng.randint(1, 9)) % 10] if t in position else t for t in thought]


@torch.no_grad()
def evaluate_think_mode(model: torch.nn.Module, tokenizer: ForgeTokenizer, tasks: Sequence[TaskExample],
                        direct_correct: Sequence[bool], max_tokens: int, batch_size: int = 64,
                        seed: int = 0, prefix: Sequence[int] = (), tools: bool = False) -> ThinkModeResult:
    """Think mode over ``tasks`` in batches; ``direct_correct`` is the direct-mode result of each task.
    ``prefix``: ids read before every body (a prompt); ``tools``: the tool runtime executes each complete
    call in a thought and inserts its result (tools mode)."""
    was_training = model.training
    model.eval()
    result, rng, digits = ThinkModeResult(), random.Random(seed), digit_ids(tokenizer)
    try:
        for start in range(0, len(tasks), batch_size):
            chunk = tasks[start : start + batch_size]
            direct = direct_correct[start : start + batch_size]
            hook = ToolRuntime(tokenizer) if tools else None
            result.extend(_think_batch(model, tokenizer, chunk, direct, max_tokens, (rng, digits), prefix, hook,
                                       None if tools else reasoning_opening(tokenizer)))
    finally:
        model.train(was_training)
    return result


def _think_batch(model: torch.nn.Module, tokenizer: ForgeTokenizer, tasks: Sequence[TaskExample],
                 direct: Sequence[bool], max_tokens: int, corruption: tuple[random.Random, list[int]],
                 prefix: Sequence[int] = (), hook: InsertHook | None = None, allowed: Allowed | None = None
                 ) -> ThinkModeResult:
    parts = [split_prompt(t) for t in tasks]
    bodies = [[BOS_ID, *prefix, *ids] for ids in tokenizer.encode_batch([body for body, _ in parts])]
    # the model may write a short preamble (a persona's greeting) before it opens a thought
    lead = greedy_continue(model, bodies, PREAMBLE_TOKENS + 1, THINK_ID).tokens
    opened = [bool(row) and row[-1] == THINK_ID for row in lead]
    bodies = [[*body, *row[:-1]] if o else body for body, row, o in zip(bodies, lead, opened, strict=True)]
    result = ThinkModeResult(opened=opened, closed=[False] * len(tasks), correct=list(direct),
                             corrupted_correct=list(direct), thought_tokens=[0] * len(tasks),
                             thoughts=[""] * len(tasks))
    chosen = [i for i, o in enumerate(opened) if o]
    heads = [bodies[i] for i in chosen]
    generated = greedy_continue(model, [[*h, THINK_ID] for h in heads], max_tokens, END_THINK_ID, hook,
                                allowed).tokens
    thoughts = [row[:-1] if row and row[-1] == END_THINK_ID else row for row in generated]
    rng, digits = corruption
    cues = tokenizer.encode_batch([parts[i][1] for i in chosen])
    answers = tokenizer.encode_batch([tasks[i].answer for i in chosen], eos=True)
    own = answers_right(model, heads, thoughts, cues, answers)
    broken = answers_right(model, heads, [corrupt_digits(t, digits, rng) for t in thoughts], cues, answers)
    for k, i in enumerate(chosen):
        result.closed[i] = bool(generated[k]) and generated[k][-1] == END_THINK_ID
        result.correct[i], result.corrupted_correct[i] = own[k], broken[k]
        result.thought_tokens[i], result.thoughts[i] = len(thoughts[k]), tokenizer.decode(thoughts[k])
    return result


def answers_right(model: torch.nn.Module, bodies: Sequence[Sequence[int]], thoughts: Sequence[Sequence[int]],
                  cues: Sequence[Sequence[int]], answers: Sequence[Sequence[int]]) -> list[bool]:
    """Teacher-forced exact match of each answer after ``body <think> thought </think> cue`` (an unclosed
    thought is closed); equal to greedy decoding of the answer."""
    heads = [[*b, THINK_ID, *t, END_THINK_ID, *c] for b, t, c in zip(bodies, thoughts, cues, strict=True)]
    return score_continuations(model, heads, answers)[1]


def think_mode_figures(tasks: Sequence[TaskExample], result: ThinkModeResult) -> dict[str, float]:
    """Flat figures: think rate, validity (opened and closed in budget), mean thought length, the accuracy
    of the thinking tasks with their own and with corrupted thoughts, and the share of thoughts that call a
    tool (think mode runs none: a model baked with tools thinks in calls, which tools mode runs)."""
    n = max(len(tasks), 1)
    thinking = [i for i, o in enumerate(result.opened) if o]
    m = max(len(thinking), 1)
    return {
        "think_rate": len(thinking) / n,
        "validity_rate": sum(result.opened[i] and result.closed[i] for i in range(len(tasks))) / n,
        "closed_rate_of_thinking": sum(result.closed[i] for i in thinking) / m,
        "mean_thought_tokens": sum(result.thought_tokens[i] for i in thinking) / m,
        "own_thought_accuracy": sum(result.correct[i] for i in thinking) / m,
        "corrupted_thought_accuracy": sum(result.corrupted_correct[i] for i in thinking) / m,
        "tool_call_rate": sum(TOOL_OPEN in result.thoughts[i] for i in thinking) / m,
    }


def think_report(model: torch.nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                 seq_len: int, max_tokens: int, prefix: Sequence[int] = ()) -> dict:
    """``agent-forge eval --mode think``: the think-mode accuracy table, the direct one on the same tasks,
    the corrupted-thought one, and the thinking figures overall and per kind (``prefix``: a prompt)."""
    scored, direct = direct_results(model, tokenizer, examples, seq_len)
    result = evaluate_think_mode(model, tokenizer, scored, direct, max_tokens, prefix=prefix)
    return mode_report(scored, direct, result, max_tokens, ("corrupted_thoughts", "thinking"), think_mode_figures)


def mode_report(scored: Sequence[TaskExample], direct: Sequence[bool], result: ThinkModeResult, max_tokens: int,
                names: tuple[str, str], figures_of: Callable[[Sequence[TaskExample], ThinkModeResult], dict]
                ) -> dict:
    """A think- or tools-mode report: its accuracy table, the direct and the corrupted ones of the same tasks
    (``names[0]``), and ``figures_of`` overall and per kind (``names[1]``)."""
    figures = {"overall": figures_of(scored, result)}
    for kind in sorted({e.kind for e in scored}):
        chosen = [i for i, e in enumerate(scored) if e.kind == kind]
        figures[kind] = figures_of([scored[i] for i in chosen], subset_result(result, chosen))
    return {
        "n": len(scored),
        **accuracy_table(scored, result.correct),
        "direct": accuracy_table(scored, direct),
        names[0]: accuracy_table(scored, result.corrupted_correct),
        names[1]: figures,
        "max_thought_tokens": max_tokens,
        "samples": [t for t in result.thoughts if t][:5],
    }


def subset_result(result: ThinkModeResult, chosen: Sequence[int]) -> ThinkModeResult:
    return ThinkModeResult(**{name: [getattr(result, name)[i] for i in chosen]
                              for name in result.__dataclass_fields__})


@dataclass
class ThinkingGeneration:
    """One think-mode generation from a text prompt: the thought (empty when the model did not think),
    whether it was closed, the answer written after the cue, and (tools mode) the calls it ran."""

    thought: str
    closed: bool
    answer: str
    ended: bool
    calls: list[ToolOutcome] = field(default_factory=list)


@dataclass(frozen=True)
class ThinkPrompt:
    """A prompt made ready for think mode: ``<bos>`` and the body (the answer cue taken off), and the cue
    to insert after ``</think>`` (``Answer:`` when the prompt had none)."""

    ids: list[int]
    cue: str
    cue_ids: list[int]

    def hook(self) -> InsertHook:
        """The engine hook that inserts the cue once, right after the model closes its thought."""

        def insert_cue(row: int, tokens: list[int], inserts: int) -> list[int] | None:
            return self.cue_ids if tokens[-1] == END_THINK_ID and inserts == 0 else None

        return insert_cue


def think_prompt(tokenizer: ForgeTokenizer, prompt: str) -> ThinkPrompt:
    body, cue = split_prompt(TaskExample("", "", 0, prompt, ""))
    cue = cue or " Answer:"
    return ThinkPrompt([BOS_ID, *tokenizer.encode(body)], cue, tokenizer.encode(cue))


def read_thinking(tokenizer: ForgeTokenizer, prompt: ThinkPrompt, generated: list[int],
                  ended: bool) -> ThinkingGeneration:
    """Split what think mode generated (``<eos>`` dropped) into the thought and the answer after the cue;
    a row that did not open a thought answered at once, so all of it is the answer (its cue dropped)."""
    tokens = [t for t in generated if t != EOS_ID]
    if THINK_ID not in tokens[: PREAMBLE_TOKENS + 1]:
        return ThinkingGeneration("", False, tokenizer.decode(tokens).removeprefix(prompt.cue), ended)
    start = tokens.index(THINK_ID) + 1  # after a preamble, if any (a persona's greeting)
    closed = END_THINK_ID in tokens[start:]
    end = tokens.index(END_THINK_ID, start) if closed else len(tokens)
    answer = tokens[end + 1 + len(prompt.cue_ids) :] if closed else []
    return ThinkingGeneration(tokenizer.decode(tokens[start:end]), closed, tokenizer.decode(answer), ended)


def generate_thinking(model: torch.nn.Module, tokenizer: ForgeTokenizer, prompt: str, max_new_tokens: int = 128,
                      *, temperature: float = 0.0, seed: int = 0, tools: bool = False) -> ThinkingGeneration:
    """Think mode for one prompt: the answer cue (``Answer:``) is taken off the prompt, the model continues
    the body; if it writes ``</think>`` the cue is inserted (as in training: body, thought, cue, answer).
    With ``tools`` each complete call in the thought runs and its result is inserted (tools mode); without,
    the thought opens with a strategy marker (think mode's grammar)."""
    ready = think_prompt(tokenizer, prompt)
    runtime = ToolRuntime(tokenizer) if tools else None
    was_training = model.training
    model.eval()
    hook, generator = AnswerCue(tokenizer, [ready.cue_ids], runtime), torch.Generator().manual_seed(seed)
    try:
        decoded = decode(model, [ready.ids], max_new_tokens, temperature=temperature, generator=generator,
                         hook=hook, allowed=None if tools else reasoning_opening(tokenizer))[0]
    finally:
        model.train(was_training)
    result = read_thinking(tokenizer, ready, decoded.tokens, decoded.ended)
    result.calls = runtime.outcomes.get(0, []) if runtime else []
    return result
