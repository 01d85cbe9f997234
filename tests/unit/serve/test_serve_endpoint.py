"""The endpoint through the official ``openai`` client against a live server on a free loopback port."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest
import torch

from agent_forge.serve import Backend, Limits, running
from support.serve_model import LIMITS, NAME

THINK_QUESTION = "Sam has 2 pens and buys 3 more. How many pens?"
THOUGHT = "<bayes> 2 + 3 = 5"  # think mode opens a thought with a strategy marker
COUNTING = " one two three four five six seven"


def test_models_lists_the_name_and_its_modes(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list().data] == [NAME, f"{NAME}:think", f"{NAME}:tools"]
    assert client.models.retrieve(f"{NAME}:think").owned_by == "agent-forge"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4o")


def test_a_completion_continues_the_prompt_and_stops_at_eos(client: openai.OpenAI, taught) -> None:
    words = taught.tokenizer.encode(COUNTING)
    done = client.completions.create(model=NAME, prompt="Count:", max_tokens=40, temperature=0)
    assert done.choices[0].text == COUNTING
    assert done.choices[0].finish_reason == "stop" and done.object == "text_completion"
    assert done.usage.prompt_tokens == 1 + len(taught.tokenizer.encode("Count:"))  # <bos> and the prompt
    assert done.usage.completion_tokens == len(words) + 1  # and <eos>
    short = client.completions.create(model=NAME, prompt="Count:", max_tokens=3, temperature=0)
    assert short.choices[0].text == taught.tokenizer.decode(words[:3]) and short.choices[0].finish_reason == "length"
    assert short.usage.completion_tokens == 3


def test_stop_strings_cut_the_text_streamed_or_not(client: openai.OpenAI, taught) -> None:
    args = {"model": NAME, "prompt": "Count:", "max_tokens": 40, "temperature": 0, "stop": [" fou", "zzz"]}
    done = client.completions.create(**args)
    assert done.choices[0].text == " one two three" and done.choices[0].finish_reason == "stop"
    assert done.usage.completion_tokens < len(taught.tokenizer.encode(COUNTING))  # stopped early, not cut later
    chunks = list(client.completions.create(**args, stream=True))
    assert "".join(c.choices[0].text for c in chunks) == " one two three"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_streaming_sends_the_same_text_piece_by_piece(client: openai.OpenAI, taught) -> None:
    chunks = list(client.completions.create(model=NAME, prompt="Count:", max_tokens=40, temperature=0,
                                            stream=True, stream_options={"include_usage": True}))
    pieces = [c.choices[0].text for c in chunks if c.choices]
    assert "".join(pieces) == COUNTING and len([p for p in pieces if p]) >= 7
    assert chunks[-1].usage.completion_tokens == len(taught.tokenizer.encode(COUNTING)) + 1
    assert not chunks[-1].choices


def test_chat_renders_the_template_and_streams_deltas(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": [{"type": "text", "text": "What is 12 * 7?"}]}]
    done = client.chat.completions.create(model=NAME, messages=messages, max_tokens=30, temperature=0)
    message = done.choices[0].message
    assert message.role == "assistant" and message.content.startswith("<tool>calculator</tool>")
    assert done.object == "chat.completion" and done.choices[0].finish_reason == "stop"
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_tokens=30, temperature=0,
                                                 stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == message.content
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tools_mode_executes_the_call(client: openai.OpenAI) -> None:
    """The model learned a wrong result (99); in tools mode the executed one (84) is inserted."""
    done = client.chat.completions.create(model=f"{NAME}:tools", max_tokens=30, temperature=0,
                                          messages=[{"role": "user", "content": "What is 12 * 7?"}])
    choice = done.choices[0]
    assert "<args>12 * 7</args><result>84</result>" in choice.message.content
    assert choice.model_extra["agent_forge"]["tool_calls"] == [
        {"tool": "calculator", "args": "12 * 7", "ok": True, "result": "84"}]
    direct = client.chat.completions.create(model=NAME, max_tokens=30, temperature=0,
                                            messages=[{"role": "user", "content": "What is 12 * 7?"}])
    assert "<result>99</result>" in direct.choices[0].message.content


def test_think_mode_returns_the_thought_apart(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": THINK_QUESTION}]
    done = client.chat.completions.create(model=f"{NAME}:think", messages=messages, max_tokens=30, temperature=0)
    message = done.choices[0].message
    assert message.model_extra["reasoning_content"] == THOUGHT and message.content == " 5"
    chunks = list(client.chat.completions.create(model=NAME, messages=messages, max_tokens=30, temperature=0,
                                                 stream=True, extra_body={"agent_forge": {"mode": "think"}}))
    deltas = [c.choices[0].delta for c in chunks]
    assert "".join((d.model_extra or {}).get("reasoning_content", "") for d in deltas) == THOUGHT
    assert "".join(d.content or "" for d in deltas) == " 5"
    text = client.completions.create(model=f"{NAME}:think", prompt=f"{THINK_QUESTION}\nAnswer:", max_tokens=30,
                                     temperature=0).choices[0]
    assert text.text == " 5" and text.model_extra["reasoning_content"] == THOUGHT


def test_sampling_follows_the_seed_and_top_p(client: openai.OpenAI) -> None:
    def sample(seed: int, top_p: float = 1.0) -> str:
        return client.completions.create(model=NAME, prompt="Zebra", max_tokens=12, temperature=2.0,
                                         top_p=top_p, seed=seed).choices[0].text

    assert sample(3) == sample(3)
    assert len({sample(seed) for seed in range(4)}) > 1
    greedy = client.completions.create(model=NAME, prompt="Zebra", max_tokens=12, temperature=0).choices[0].text
    assert sample(5, top_p=1e-6) == greedy  # a nucleus of one token is greedy decoding


@pytest.mark.parametrize(("args", "param"), [
    ({"max_tokens": LIMITS.max_tokens + 1}, "max_tokens"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": 0}, "top_p"),
    ({"n": 2}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"seed": "x"}, "seed"),
    ({"extra_body": {"agent_forge": {"mode": "dream"}}}, "agent_forge.mode"),
])
def test_bad_parameters_are_400_naming_the_parameter(client: openai.OpenAI, args: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model=NAME, prompt="Count:", **args)
    assert caught.value.body["param"] == param and caught.value.body["type"] == "invalid_request_error"


def test_context_and_model_errors(client: openai.OpenAI, taught) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["code"] == "model_not_found" and NAME in caught.value.body["message"]
    with pytest.raises(openai.BadRequestError) as caught:  # digits are one token each
        client.completions.create(model=NAME, prompt="7" * taught.context, max_tokens=4)
    assert caught.value.body["code"] == "context_length_exceeded" and caught.value.body["param"] == "prompt"
    with pytest.raises(openai.BadRequestError) as caught:  # the prompt fits, prompt + completion does not
        client.completions.create(model=NAME, prompt="7" * (taught.context - 20), max_tokens=40)
    assert caught.value.body["code"] == "context_length_exceeded" and caught.value.body["param"] == "max_tokens"
    fits = client.completions.create(model=NAME, prompt="7" * (taught.context - 20), max_tokens=19)
    assert fits.usage.prompt_tokens == taught.context - 19
    with pytest.raises(openai.BadRequestError, match="tools mode"):
        client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "hi"}],
                                       tools=[{"type": "function", "function": {"name": "f"}}])
    with pytest.raises(openai.BadRequestError, match="agree"):
        client.chat.completions.create(model=f"{NAME}:think", messages=[{"role": "user", "content": "hi"}],
                                       extra_body={"agent_forge": {"mode": "tools"}})


def test_an_oversized_body_is_413(client: openai.OpenAI) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(model=NAME, prompt="x" * LIMITS.max_body_bytes)
    assert caught.value.status_code == 413 and caught.value.body["code"] == "request_too_large"


def _raw(server, path: str, data: bytes | None, method: str = "POST") -> tuple[int, dict]:
    request = urllib.request.Request(server.url.removesuffix("/v1") + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_malformed_requests_get_json_errors_in_openai_shape(server) -> None:
    for path, data, method, status in [
        ("/v1/completions", b'{"model": "taught", "prompt": ', "POST", 400),
        ("/v1/completions", b"[1, 2]", "POST", 400),
        ("/v1/completions", b'{"model": "taught", "prompt": [1, 2]}', "POST", 400),
        ("/v1/chat/completions", b'{"model": "taught", "messages": [{"role": "tool", "content": "x"}]}', "POST",
         400),
        ("/v1/embeddings", b"{}", "POST", 404),
        ("/nowhere", None, "GET", 404),
        ("/v1/models", b"{}", "PUT", 405),
    ]:
        got, body = _raw(server, path, data, method)
        assert got == status and set(body["error"]) == {"message", "type", "param", "code"}, (path, body)
    assert _raw(server, "/health", None, "GET") == (200, {"status": "ok", "model": NAME})


def test_requests_over_the_concurrency_limit_get_429(taught) -> None:
    """One request admitted and waiting for the model (the test holds the model's lock) fills the one slot:
    the next is refused at once with 429 and Retry-After, and served again once the first is done."""
    with running(taught, Limits(max_concurrent=1)) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
        results: list[str] = []
        with taught.lock:
            first = threading.Thread(target=lambda: results.append(
                client.completions.create(model=NAME, prompt="Count:", max_tokens=3, temperature=0).choices[0].text))
            first.start()
            while server.slots.acquire(blocking=False):  # wait until the first request holds the slot
                server.slots.release()
                time.sleep(0.01)
            with pytest.raises(openai.RateLimitError) as caught:
                client.completions.create(model=NAME, prompt="Count:", max_tokens=3)
            assert caught.value.response.headers["Retry-After"] == "1"
            assert caught.value.body["code"] == "rate_limit_exceeded"
        first.join(timeout=60)
        assert results == [taught.tokenizer.decode(taught.tokenizer.encode(COUNTING)[:3])]
        assert client.completions.create(model=NAME, prompt="Count:", max_tokens=3, temperature=0).choices[0].text


def test_a_body_that_stalls_or_ends_short_is_refused(taught) -> None:
    def send(server, head: bytes, body: bytes, close_write: bool) -> bytes:
        with socket.create_connection(server.server_address[:2], timeout=30) as connection:
            connection.sendall(head + body)
            if close_write:
                connection.shutdown(socket.SHUT_WR)
            answer = b""
            while part := connection.recv(65536):  # the server closes the connection after such a refusal
                answer += part
            return answer

    head = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
    with running(taught, Limits(read_timeout_s=0.5)) as server:
        started = time.perf_counter()
        stalled = send(server, head, b'{"model": ', close_write=False)
        assert stalled.startswith(b"HTTP/1.1 408") and b"request_timeout" in stalled
        assert time.perf_counter() - started < 10
        short = send(server, head, b'{"model": ', close_write=True)
        assert short.startswith(b"HTTP/1.1 400") and b"bytes short" in short
        chunked = send(server, b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                       b"", close_write=False)
        assert chunked.startswith(b"HTTP/1.1 411")


class FailingModel(torch.nn.Module):
    """A model whose forward pass fails: what a bug in decoding looks like to the server."""

    def forward(self, **kwargs: object) -> None:
        raise RuntimeError("broken on purpose")


def test_a_failure_inside_decoding_is_a_500_and_the_server_goes_on(taught) -> None:
    logged: list[str] = []
    broken = Backend("broken", FailingModel(), taught.tokenizer, 64, "a failing model")
    with running(broken, log=logged.append) as server:
        client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as caught:
                client.completions.create(model="broken", prompt="x", max_tokens=2)
            assert caught.value.body["type"] == "server_error"
    assert any("broken on purpose" in line for line in logged)


def test_a_client_gone_mid_request_is_not_logged_as_an_error(taught) -> None:
    logged: list[str] = []
    with running(taught, log=logged.append) as server:
        for error in (ConnectionResetError(104, "Connection reset by peer"), ValueError("something odd")):
            try:
                raise error
            except Exception:
                server.handle_error(None, ("127.0.0.1", 1))  # what socketserver calls from the handler thread
    assert len(logged) == 1 and "ValueError: something odd" in logged[0]
