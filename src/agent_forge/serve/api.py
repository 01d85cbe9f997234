"""The OpenAI request and response shapes the endpoint speaks, and the limits every request is checked
against before the model sees it.

A request body is parsed into a ``Job`` or refused with an ``ApiError`` (status, OpenAI error type, the
parameter at fault, one sentence naming the problem and the fix). Fields this server does not implement
and a client may rely on (``n`` > 1, ``logprobs``, ``echo``, client-side ``tools``) are refused rather than
ignored; other unknown fields are ignored, as OpenAI-compatible servers commonly do.

Modes: ``direct`` (the default: the model continues the prompt), ``think`` (the model may open
``<think>``; the thought comes back as ``reasoning_content``, the answer as the text) and ``tools`` (the
calculator and unit-converter calls the model writes are executed and their ``<result>`` inserted). A
request picks one with ``"agent_forge": {"mode": "think"}`` in the body or a model-name suffix
(``MODEL:think``, ``MODEL:tools``); ``/v1/models`` lists the suffixed names so clients that only pick a model
can reach every mode.

The chat template is ``render_chat``: one function, so it can be swapped for a tokenizer's own template.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

MODES = ("direct", "think", "tools")
ANSWER_CUE = "Answer:"  # every task of this project ends its prompt with it (data/adapters.py, task_*.py)
MAX_STOP_SEQUENCES, MAX_STOP_CHARS = 4, 64
MAX_TOOL_CALLS = 8
COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions
_SEED_RANGE = (-(1 << 63), (1 << 64) - 1)  # what torch.Generator.manual_seed accepts
_REFUSED = {"n": "n must be 1: one choice per request", "best_of": "best_of is not supported",
            "echo": "echo is not supported", "logprobs": "logprobs are not supported",
            "top_logprobs": "logprobs are not supported", "suffix": "suffix (insertion) is not supported",
            "tools": "client-side tools are not supported; the built-in tools run with the tools mode",
            "functions": "client-side functions are not supported; the built-in tools run with the tools mode"}


class ApiError(Exception):
    """A refused request: HTTP ``status`` and the body of OpenAI's error shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class Limits:
    """What one request may ask for, and how many may be in the server at once (D8)."""

    max_body_bytes: int = 64 * 1024
    max_tokens: int = 256  # cap on a request's max_tokens
    max_concurrent: int = 4  # requests admitted at once (one decodes, the others wait); more get 429
    read_timeout_s: float = 10.0  # a client that stalls while sending or receiving is dropped


@dataclass(frozen=True)
class Job:
    """One validated request: the text to continue and how to decode it. ``max_tokens`` None means "the
    rest of the context, capped" (chat's default), resolved once the prompt is tokenized."""

    prompt: str
    max_tokens: int | None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    mode: str = "direct"
    max_calls: int = 4
    stream: bool = False
    include_usage: bool = False
    model: str = ""  # the name the request used (suffix included), echoed back
    chat: bool = False


def render_chat(messages: Sequence[Mapping[str, Any]]) -> str:
    """The chat template: each system, developer or user message's text on its own line, each assistant
    message as ``Answer: TEXT`` on its own line, and the prompt ends with the cue ``Answer:`` on a line of
    its own, as every task of this project is written (``...\\nAnswer:``), so the model answers the last
    question the way it learned to. ``[system "Be brief.", user "What is 2 + 3?"]`` renders as
    ``"Be brief.\\nWhat is 2 + 3?\\nAnswer:"``."""
    lines = []
    for message in messages:
        text = message_text(message).strip()
        lines.append(f"{ANSWER_CUE} {text}" if message["role"] == "assistant" else text)
    return "\n".join([*lines, ANSWER_CUE])


def message_text(message: Mapping[str, Any]) -> str:
    """A message's content: a string, or the text of its ``{"type": "text"}`` parts (None for an
    assistant message that carried none)."""
    content = message.get("content")
    if content is None or isinstance(content, str):
        return content or ""
    return "".join(part["text"] for part in content)


def parse_completion(body: Mapping[str, Any], served: str) -> Job:
    """A ``/v1/completions`` body: one text prompt."""
    model = _model_and_mode(body, served)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise ApiError(400, "prompt must be one string (token-id and batched prompts are not supported)",
                       "prompt")
    return _job(body, model, prompt, chat=False)


def parse_chat(body: Mapping[str, Any], served: str) -> Job:
    """A ``/v1/chat/completions`` body: the messages rendered with the chat template."""
    model = _model_and_mode(body, served)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list of {role, content}", "messages")
    for index, message in enumerate(messages):
        _check_message(message, f"messages[{index}]")
    return _job(body, model, render_chat(messages), chat=True)


def _check_message(message: Any, where: str) -> None:
    roles = ("system", "developer", "user", "assistant")
    if not isinstance(message, dict) or message.get("role") not in roles:
        raise ApiError(400, f"{where} needs a role of {', '.join(roles)} (tool messages are not supported)",
                       where)
    content = message.get("content")
    if content is None and message["role"] == "assistant":
        return
    parts_ok = isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content)
    if not isinstance(content, str) and not parts_ok:
        raise ApiError(400, f"{where}.content must be a string or a list of text parts", f"{where}.content")


def _job(body: Mapping[str, Any], model: tuple[str, str, int], prompt: str, chat: bool) -> Job:
    """The fields both routes share, checked; ``model`` is (requested name, mode, tool-call budget)."""
    for name, reason in _REFUSED.items():
        value = body.get(name)
        one = name in ("n", "best_of") and value == 1 and not isinstance(value, bool)
        if value is not None and not one and (name in ("n", "best_of") or value):
            raise ApiError(400, reason, name)
    name, mode, max_calls = model
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    include_usage = bool(stream and isinstance(options, dict) and options.get("include_usage") is True)
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    default = None if chat else COMPLETIONS_DEFAULT_MAX_TOKENS
    return Job(prompt, _whole(limit, "max_tokens", 1) if limit is not None else default,
               _number(body, "temperature", 1.0, 0.0, 2.0), _number(body, "top_p", 1.0, 0.0, 1.0, open_low=True),
               _seed(body.get("seed")), _stops(body.get("stop")), mode, max_calls, stream, include_usage,
               name, chat)


def _model_and_mode(body: Mapping[str, Any], served: str) -> tuple[str, str, int]:
    """The requested name, which must be the served model (with an optional ``:mode`` suffix), the mode
    from the suffix or the ``agent_forge`` field (they must agree), and the tool-call budget."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ApiError(400, "model is required: use the name `GET /v1/models` lists", "model")
    base, colon, suffix = model.rpartition(":")
    if not colon or suffix not in MODES:
        base, suffix = model, ""
    if base != served:
        raise ApiError(404, f"model '{model}' is not served here; this server serves '{served}' "
                       f"(modes: {', '.join(f'{served}:{m}' for m in MODES[1:])})", "model", "model_not_found")
    options = body.get("agent_forge") or {}
    if not isinstance(options, dict):
        raise ApiError(400, 'agent_forge must be an object such as {"mode": "think"}', "agent_forge")
    mode = options.get("mode", suffix or "direct")
    if mode not in MODES or (suffix and mode != suffix):
        raise ApiError(400, f"agent_forge.mode must be one of {', '.join(MODES)} and agree with the model "
                       f"suffix (got {mode!r} with model {model!r})", "agent_forge.mode")
    max_calls = options.get("max_calls", 4)
    return model, mode, _whole(max_calls, "agent_forge.max_calls", 1, MAX_TOOL_CALLS)


def _whole(value: Any, name: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
        span = f"{low}..{high}" if high else f">= {low}"
        raise ApiError(400, f"{name} must be a whole number {span} (got {value!r})", name)
    return value


def _number(body: Mapping[str, Any], name: str, default: float, low: float, high: float,
            open_low: bool = False) -> float:
    value = body.get(name)
    if value is None:
        return default
    wrong = isinstance(value, bool) or not isinstance(value, (int, float))
    if wrong or not (low < value <= high if open_low else low <= value <= high):
        span = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
        raise ApiError(400, f"{name} must be a number in {span} (got {value!r})", name)
    return float(value)


def _boolean(body: Mapping[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ApiError(400, f"{name} must be true or false (got {value!r})", name)
    return value


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    low, high = _SEED_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ApiError(400, f"seed must be a whole number in [-2^63, 2^64) (got {value!r})", "seed")
    return value


def _stops(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if stops is None:
        return ()
    if (not isinstance(stops, list) or len(stops) > MAX_STOP_SEQUENCES
            or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_CHARS for s in stops)):
        raise ApiError(400, f"stop must be a string or a list of at most {MAX_STOP_SEQUENCES} non-empty strings "
                       f"of at most {MAX_STOP_CHARS} characters", "stop")
    return tuple(stops)


# ---- responses --------------------------------------------------------------------------------------------

def response_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"


def model_list(served: str, created: int) -> dict[str, Any]:
    """``GET /v1/models``: the served model and its mode-suffixed names."""
    names = [served, *(f"{served}:{mode}" for mode in MODES[1:])]
    return {"object": "list", "data": [model_card(name, created) for name in names]}


def model_card(name: str, created: int) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": created, "owned_by": "agent-forge"}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def envelope(job: Job, ident: str, choices: list[dict[str, Any]], chunk: bool) -> dict[str, Any]:
    """The frame around choices: id, object type, creation time, model."""
    kind = ("chat.completion.chunk" if chunk else "chat.completion") if job.chat else "text_completion"
    return {"id": ident, "object": kind, "created": int(time.time()), "model": job.model, "choices": choices}


def choice(job: Job, reasoning: str, content: str, finish_reason: str | None, delta: bool,
           extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """One choice: chat's ``message`` (or ``delta``) with ``reasoning_content`` in think mode, or the
    completion's ``text`` (with ``reasoning_content`` beside it in think mode)."""
    item: dict[str, Any] = {"index": 0}
    if job.chat:
        message: dict[str, Any] = {} if delta else {"role": "assistant"}
        if content or not delta:
            message["content"] = content
        if job.mode == "think" and (reasoning or not delta):
            message["reasoning_content"] = reasoning
        item["delta" if delta else "message"] = message
    else:
        item["text"] = content
        if job.mode == "think" and (reasoning or not delta):
            item["reasoning_content"] = reasoning
        item["logprobs"] = None
    item["finish_reason"] = finish_reason
    if extra:
        item["agent_forge"] = extra
    return item
