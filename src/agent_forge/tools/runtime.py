"""The tool runtime: an insert hook for the decoding engine (``agent_forge.engine``) that executes a
complete call as soon as a row has emitted it and appends the executed ``<result>...</result>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.engine import Decoded, InsertHook, decode, pick_tokens
from agent_forge.tools.calls import BUILTIN_TOOLS, Tool, ToolOutcome, execute, last_call

__all__ = ["AnswerCue", "Decoded", "InsertHook", "ToolRuntime", "decode", "pick_tokens"]  # engine names stay here


class ToolRuntime:
    """The insert hook that executes calls: after ``</args>`` the call is parsed, run, and answered."""

    def __init__(self, tokenizer: ForgeTokenizer, tools: Mapping[str, Tool] | None = None,
                 max_calls: int = 6) -> None:
        self.tokenizer, self.tools, self.max_calls = tokenizer, dict(tools or BUILTIN_TOOLS), max_calls
        self.args_close = tokenizer.special_id("</args>")
        self.outcomes: dict[int, list[ToolOutcome]] = {}

    def __call__(self, row: int, tokens: list[int], calls: int) -> list[int] | None:
        if tokens[-1] != self.args_close or calls >= self.max_calls:
            return None
        parsed = last_call(self.tokenizer.decode(tokens), self.tools)
        if parsed is None:
            return None
        outcome = execute(parsed, self.tools)
        self.outcomes.setdefault(row, []).append(outcome)
        return self.tokenizer.encode(outcome.result_text)


class AnswerCue:
    """The insert hook of think and tools mode: after a row's first ``</think>`` its answer cue (the task's
    ``Answer:`` or code line) is inserted, as training wrote ``body <think>..</think> cue answer``; inside
    the thought, ``tools`` (a ``ToolRuntime``) executes complete calls."""

    def __init__(self, tokenizer: ForgeTokenizer, cues: Sequence[Sequence[int]], tools: ToolRuntime | None = None
                 ) -> None:
        self.end_think, self.cues, self.tools = tokenizer.special_id("</think>"), [list(c) for c in cues], tools
        self.answered: set[int] = set()

    def __call__(self, row: int, tokens: list[int], inserts: int) -> list[int] | None:
        if tokens[-1] == self.end_think and row not in self.answered:
            self.answered.add(row)
            return self.cues[row] or None
        if row in self.answered or self.tools is None:  # no calls once the answer has begun
            return None
        return self.tools(row, tokens, inserts)
