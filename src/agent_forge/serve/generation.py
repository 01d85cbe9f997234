"""What the endpoint runs for one request: the prompt made ready for its mode, decoded by the engine
(``agent_forge.engine.decode``: sampling, top-p, seeded generator, insert hooks) one request at a time,
with the text read back as it grows so that stop strings end decoding and a stream sends every piece once.

A registered model is the torch model ``agent-forge generate`` loads; a bundle is its numpy runtime behind
``RuntimeLM``'s cached face, so both go through the same engine, hooks and stop rules. Think mode uses
``reasoning.think_mode``'s prompt split and cue hook (as ``generate --think``), tools mode the tool
runtime's hook (as ``generate --tools``).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent_forge.data.tokenizer import BOS_ID, EOS_ID, ForgeTokenizer
from agent_forge.engine import Allowed, InsertHook, decode
from agent_forge.reasoning.think_mode import ThinkPrompt, read_thinking, reasoning_opening, think_prompt
from agent_forge.serve.api import ApiError, Job, Limits
from agent_forge.tools.calls import final_answer
from agent_forge.tools.runtime import ToolRuntime

Visible = tuple[str, str]  # (reasoning, content) as the client sees them
Send = Callable[[Visible], bool]  # a new piece of each; False when the client is gone


@dataclass
class Backend:
    """A model the server decodes with: anything the engine drives, its tokenizer, its context length.
    Decoding holds ``lock``: one request at a time (the model's threads are shared)."""

    name: str
    model: nn.Module
    tokenizer: ForgeTokenizer
    context: int
    source: str
    numpy_runtime: bool = False  # a bundle's runtime: its matmuls run on numpy's BLAS, not torch's
    lock: threading.Lock = field(default_factory=threading.Lock)


def model_backend(name: str, model: nn.Module, tokenizer: ForgeTokenizer, source: str = "registered model"
                  ) -> Backend:
    context = int(getattr(getattr(model, "config", None), "max_seq_len", 0) or 0)
    return Backend(name, model.eval(), tokenizer, context, source)


def bundle_backend(folder: Path, name: str | None = None) -> Backend:
    """A bundle's ternary numpy runtime (manifest verified on load) behind ``RuntimeLM``; named after the
    model it was exported from unless ``name`` is given."""
    from agent_forge.export.evaluation import RuntimeLM
    from agent_forge.export.runtime import load_bundle

    bundle = load_bundle(folder)
    served = name or f"{bundle.manifest.get('source_model') or folder.name}__bundle"
    return Backend(served, RuntimeLM(bundle.model), ForgeTokenizer.load(folder), bundle.config.max_seq_len,
                   "bundle (ternary runtime)", numpy_runtime=True)


@dataclass
class Prepared:
    """A job's prompt ids, its decoding hook and how its generated tokens read as (reasoning, content)."""

    ids: list[int]
    hook: InsertHook | None
    read: Callable[[list[int], bool], Visible]
    tools: ToolRuntime | None = None
    allowed: Allowed | None = None  # think mode's grammar: a thought opens with a strategy marker


def prepare(backend: Backend, job: Job) -> Prepared:
    """The prompt for the job's mode: think mode continues the body (its cue comes after the thought)."""
    tokenizer = backend.tokenizer
    if job.mode == "think":
        ready = think_prompt(tokenizer, job.prompt)
        return Prepared(ready.ids, ready.hook(), _think_reader(tokenizer, ready), allowed=reasoning_opening(tokenizer))
    ids = [BOS_ID, *tokenizer.encode(job.prompt)]
    tools = ToolRuntime(tokenizer, max_calls=job.max_calls) if job.mode == "tools" else None

    def read(tokens: list[int], final: bool) -> Visible:
        return "", tokenizer.decode([t for t in tokens if t != EOS_ID])

    return Prepared(ids, tools, read, tools)


def _think_reader(tokenizer: ForgeTokenizer, ready: ThinkPrompt) -> Callable[[list[int], bool], Visible]:
    def read(tokens: list[int], final: bool) -> Visible:
        thinking = read_thinking(tokenizer, ready, tokens, False)
        if not final and not thinking.thought and ready.cue.startswith(thinking.answer):
            return "", ""  # a direct answer may still be writing the cue, which is dropped once complete
        return thinking.thought, thinking.answer

    return read


def resolve_max_tokens(job: Job, prompt_tokens: int, context: int, limits: Limits) -> int:
    """The job's token budget, checked against the cap and the context (prompt plus completion)."""
    room = context - prompt_tokens
    if room < 1:
        raise ApiError(400, f"this model's maximum context length is {context} tokens; the prompt has "
                       f"{prompt_tokens}: shorten it", "messages" if job.chat else "prompt",
                       "context_length_exceeded")
    wanted = job.max_tokens if job.max_tokens is not None else min(limits.max_tokens, room)
    if wanted > limits.max_tokens:
        raise ApiError(400, f"max_tokens is {wanted}; this server allows at most {limits.max_tokens}",
                       "max_tokens")
    if wanted > room:
        raise ApiError(400, f"this model's maximum context length is {context} tokens; you asked for "
                       f"{prompt_tokens + wanted} ({prompt_tokens} in the prompt, {wanted} in the completion): "
                       "shorten the prompt or lower max_tokens", "max_tokens", "context_length_exceeded")
    return wanted


class TextStream:
    """The text of a growing generation, shown once: ``watch`` (the engine's stop rule) reads the tokens
    after every model token, cuts the content at the first stop string (which ends decoding) and sends
    what is new. Held back until more comes: a trailing partial character and a tail that may be the
    start of a stop string, so nothing sent is ever taken back."""

    def __init__(self, read: Callable[[list[int], bool], Visible], stops: tuple[str, ...], send: Send | None
                 ) -> None:
        self.read, self.stops, self.send = read, stops, send
        self.sent: Visible = ("", "")
        self.stopped = False  # a stop string ended the generation
        self.gone = False  # the client stopped listening

    def watch(self, row: int, tokens: list[int]) -> bool:
        visible = self._cut(self.read(tokens, False), final=False)
        self._send(visible)
        return self.stopped or self.gone

    def finish(self, tokens: list[int]) -> Visible:
        visible = self._cut(self.read(tokens, True), final=True)
        self._send(visible)
        return visible

    def _cut(self, visible: Visible, final: bool) -> Visible:
        reasoning, content = visible
        hits = [content.find(s) for s in self.stops if s in content]
        if hits:
            self.stopped = True
            return reasoning, content[: min(hits)]
        if final:
            return visible
        hold = max((len(s) - 1 for s in self.stops), default=0)
        shown = content[: len(content) - hold] if hold else content
        return reasoning.rstrip("\ufffd"), shown.rstrip("\ufffd")  # U+FFFD: bytes of a character to come

    def _send(self, visible: Visible) -> None:
        pieces = tuple(now[len(before):] if now.startswith(before) else ""
                       for before, now in zip(self.sent, visible, strict=True))
        if self.send is None or self.gone or not any(pieces):
            return
        self.sent = tuple(b + p for b, p in zip(self.sent, pieces, strict=True))  # type: ignore[assignment]
        self.gone = not self.send(pieces)  # type: ignore[arg-type]


@dataclass
class Completion:
    """A finished request as the response reports it."""

    reasoning: str
    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    extra: dict[str, Any] = field(default_factory=dict)


def generate(backend: Backend, job: Job, prepared: Prepared, max_tokens: int, send: Send | None = None
             ) -> Completion:
    """Decode one request (holding the backend's lock); ``send`` receives the new text as it comes."""
    stream = TextStream(prepared.read, job.stop, send)
    seed = job.seed if job.seed is not None else secrets.randbits(63)
    with backend.lock:
        decoded = decode(backend.model, [prepared.ids], max_tokens, temperature=job.temperature,
                         top_p=job.top_p, generator=torch.Generator().manual_seed(seed), hook=prepared.hook,
                         watch=stream.watch, eos_id=EOS_ID, allowed=prepared.allowed)[0]
    reasoning, content = stream.finish(decoded.tokens)
    reason = "stop" if decoded.ended or stream.stopped else "length"
    return Completion(reasoning, content, reason, len(prepared.ids), decoded.model_tokens,
                      _tool_report(prepared, content))


def _tool_report(prepared: Prepared, content: str) -> dict[str, Any]:
    """Tools mode: the calls executed (tool, args, ok, result) and the final answer after the last result."""
    if prepared.tools is None:
        return {}
    calls = [{"tool": o.call.name if o.call else None, "args": o.call.args if o.call else None, "ok": o.ok,
              "result": o.value} for o in prepared.tools.outcomes.get(0, [])]
    return {"tool_calls": calls, "answer": final_answer(content)}
