"""The tool runtime: an insert hook for the decoding engine (``agent_forge.engine``) that executes a
complete call as soon as a row has emitted it and appends the executed ``<result>...</result>``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from agent_forge.data.tokenizer import BOS_ID, ForgeTokenizer
from agent_forge.engine import Decoded, InsertHook, decode, pick_tokens
from agent_forge.tools.calls import BUILTIN_TOOLS, Tool, ToolOutcome, execute, final_answer, last_call

__all__ = ["Decoded", "InsertHook", "ToolGeneration", "ToolRuntime", "decode", "generate_many_with_tools",
           "generate_with_tools", "pick_tokens"]  # the engine's names stay importable from here

@dataclass
class ToolGeneration:
    """One generation with tools: the text (special tokens kept), the calls executed, the final answer."""

    text: str
    tokens: list[int]
    outcomes: list[ToolOutcome]
    answer: str
    ended: bool


class ToolRuntime:
    """The insert hook that executes calls: after ``</args>`` the call is parsed, run, and answered."""

    def __init__(self, tokenizer: ForgeTokenizer, tools: Mapping[str, Tool] | None = None,
                 max_calls: int = 4) -> None:
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


def generate_many_with_tools(model: nn.Module, tokenizer: ForgeTokenizer, prompts: Sequence[Sequence[int]],
                             max_new_tokens: int = 64, max_calls: int = 4, *, temperature: float = 0.0,
                             generator: torch.Generator | None = None,
                             tools: Mapping[str, Tool] | None = None) -> list[ToolGeneration]:
    """Generate for token-id prompts (``<bos>`` included), executing the calls each row makes."""
    was_training = model.training
    model.eval()
    runtime = ToolRuntime(tokenizer, tools, max_calls)
    try:
        decoded = decode(model, prompts, max_new_tokens, temperature=temperature, generator=generator,
                         hook=runtime if max_calls > 0 else None)
    finally:
        model.train(was_training)
    generations = []
    for row, item in enumerate(decoded):
        text = tokenizer.decode(item.tokens)
        generations.append(ToolGeneration(text, item.tokens, runtime.outcomes.get(row, []),
                                          final_answer(text), item.ended))
    return generations


def generate_with_tools(model: nn.Module, tokenizer: ForgeTokenizer, prompt: str, max_new_tokens: int = 64,
                        max_calls: int = 4, *, temperature: float = 0.0, seed: int = 0,
                        tools: Mapping[str, Tool] | None = None) -> ToolGeneration:
    """Generate from a text prompt; when the model emits a complete call, run it, append the result, go on."""
    ids = [BOS_ID, *tokenizer.encode(prompt)]
    generator = torch.Generator().manual_seed(seed)
    return generate_many_with_tools(model, tokenizer, [ids], max_new_tokens, max_calls,
                                    temperature=temperature, generator=generator, tools=tools)[0]
