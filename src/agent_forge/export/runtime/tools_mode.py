"""Tools mode of the bundle runtime: think mode with the calculator and the unit converter live.

The same generation as ``agent-forge generate --tools`` (the package's ``AnswerCue`` and ``ToolRuntime``
hooks on its decoding engine), greedy, as one insert hook of ``greedy_generate``: the model continues the
prompt's body (the prompt without its ``Answer:`` cue) and opens a thought by itself; after each ``</args>``
of the thought the call is parsed (never evaluated as code), run within the tools' size limits, and
``<result>...</result>`` inserted (``<result>error: ...</result>`` for a malformed call, an unknown tool or
arguments a tool refuses); after the first ``</think>`` the cue is inserted and the model answers.

The tools are not written twice: a bundle carries byte-identical copies of the package's
``agent_forge/tools/{calculator,units,calls}.py`` (standard library only) in ``forge_runtime/tools/``, and
this module imports them from there; inside the package, where this folder has no copy, from their home.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from .bundle import CUE, PREAMBLE_TOKENS, Bundle, TextCodec, greedy_generate, split_cue

MAX_CALLS = 6  # calls per generation, as the package's ToolRuntime


def tool_calls() -> ModuleType:
    """The tools' call parser and executor (``calls``): the bundle's copy beside this file, or inside the
    package (no ``tools`` folder here) the one home of the code, ``agent_forge.tools.calls``."""
    if (Path(__file__).resolve().parent / "tools").is_dir():  # a bundle: forge_runtime/tools/calls.py
        return importlib.import_module(".tools.calls", __package__)  # by name: the package has no such module
    from ...tools import calls  # agent_forge/export/runtime -> agent_forge/tools

    return calls


class ToolHook:
    """The insert hook of tools mode for one generation: the cue after the first ``</think>``; before it,
    a complete call's executed result after ``</args>`` (at most ``max_calls``, none once the answer began)."""

    def __init__(self, codec: TextCodec, cue: list[int], max_calls: int = MAX_CALLS) -> None:
        self.codec, self.cue, self.max_calls, self.calls = codec, cue, max_calls, tool_calls()
        self.end_think, self.args_close = codec.special_id("</think>"), codec.special_id("</args>")
        self.answered = False
        self.outcomes: list[Any] = []  # calls.ToolOutcome of every call run, in order

    def __call__(self, tokens: list[int], inserts: int) -> list[int] | None:
        if tokens[-1] == self.end_think and not self.answered:
            self.answered = True
            return self.cue or None
        if self.answered or tokens[-1] != self.args_close or inserts >= self.max_calls:
            return None
        parsed = self.calls.last_call(self.codec.decode(tokens))
        if parsed is None:
            return None
        outcome = self.calls.execute(parsed)
        self.outcomes.append(outcome)
        return self.codec.encode(outcome.result_text, bos=False)


@dataclass
class ToolsGeneration:
    """The thought (with its calls and results; empty when the model answered at once), whether it was
    closed, the answer written after the cue, and every call run."""

    thought: str
    closed: bool
    answer: str
    calls: list[Any] = field(default_factory=list)

    def render(self) -> str:
        """The thought on its own line(s), then the answer."""
        if not self.thought:
            return self.answer
        return f"<think>{self.thought}{'</think>' if self.closed else ' ...'}\n{self.answer}"




def tools_generate(bundle: Bundle, prompt: str, max_new: int) -> ToolsGeneration:
    """Tools mode for one prompt, greedy, ``max_new`` tokens of the model's own (inserts do not count)."""
    codec = bundle.codec()
    body, cue = split_cue(prompt)
    hook = ToolHook(codec, codec.encode(cue or " " + CUE, bos=False))
    eos = bundle.config.eos_token_id
    tokens = [t for t in greedy_generate(bundle.model, codec.encode(body), max_new, eos, hook) if t != eos]
    think = codec.special_id("<think>")
    if think not in tokens[: PREAMBLE_TOKENS + 1]:  # answered at once: everything is the answer
        return ToolsGeneration("", False, codec.decode(tokens).removeprefix(cue), hook.outcomes)
    start = tokens.index(think) + 1  # after a preamble, if any (a persona's greeting)
    closed = hook.end_think in tokens[start:]
    end = tokens.index(hook.end_think, start) if closed else len(tokens)
    answer = tokens[end + 1 + len(hook.cue) :] if closed else []
    return ToolsGeneration(codec.decode(tokens[start:end]), closed, codec.decode(answer), hook.outcomes)


def tools_answer(bundle: Bundle, prompt: str, max_new: int) -> str:
    """``python -m forge_runtime --tools``: the thought with its calls and results, then the answer."""
    return tools_generate(bundle, prompt, max_new).render()
