"""Request parsing, the chat template, the token budget and the streamed text, without a server."""

from __future__ import annotations

import pytest

from agent_forge.serve.api import ApiError, Job, Limits, parse_chat, parse_completion, render_chat
from agent_forge.serve.generation import TextStream, generate, prepare, resolve_max_tokens


def test_the_chat_template_ends_with_the_answer_cue() -> None:
    messages = [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "What is 2 + 3?"},
                {"role": "assistant", "content": " 5"}, {"role": "user", "content": "And 4 + 4?"}]
    assert render_chat(messages) == "Be brief.\nWhat is 2 + 3?\nAnswer: 5\nAnd 4 + 4?\nAnswer:"
    assert render_chat([{"role": "assistant", "content": None}]) == "Answer: \nAnswer:"


def test_defaults_follow_openai() -> None:
    chat = parse_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, "m")
    text = parse_completion({"model": "m:tools", "prompt": ["hi"]}, "m")
    assert (chat.max_tokens, chat.temperature, chat.top_p, chat.mode, chat.chat) == (None, 1.0, 1.0, "direct", True)
    assert (text.max_tokens, text.mode, text.max_calls, text.model, text.stream) == (16, "tools", 4, "m:tools", False)
    assert parse_completion({"model": "m", "prompt": "x", "stop": "\n", "seed": -1}, "m").stop == ("\n",)


@pytest.mark.parametrize(("body", "status", "param"), [
    ({"prompt": "x"}, 400, "model"),
    ({"model": "other", "prompt": "x"}, 404, "model"),
    ({"model": "m:dream", "prompt": "x"}, 404, "model"),  # not a mode: read as another model's name
    ({"model": "m", "prompt": 5}, 400, "prompt"),
    ({"model": "m", "prompt": "x", "max_tokens": 0}, 400, "max_tokens"),
    ({"model": "m", "prompt": "x", "max_tokens": True}, 400, "max_tokens"),
    ({"model": "m", "prompt": "x", "stream": "yes"}, 400, "stream"),
    ({"model": "m", "prompt": "x", "echo": True}, 400, "echo"),
    ({"model": "m", "prompt": "x", "logprobs": 1}, 400, "logprobs"),
    ({"model": "m", "prompt": "x", "best_of": 3}, 400, "best_of"),
    ({"model": "m", "prompt": "x", "stop": [""]}, 400, "stop"),
    ({"model": "m", "prompt": "x", "seed": 1 << 64}, 400, "seed"),
    ({"model": "m", "prompt": "x", "agent_forge": "think"}, 400, "agent_forge"),
    ({"model": "m", "prompt": "x", "agent_forge": {"mode": "tools", "max_calls": 99}}, 400, "agent_forge.max_calls"),
])
def test_bad_completion_bodies(body: dict, status: int, param: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_completion(body, "m")
    assert (caught.value.status, caught.value.param) == (status, param)
    assert caught.value.body()["error"]["message"] == caught.value.message


@pytest.mark.parametrize("messages", [[], "hi", [{"role": "user", "content": 3}], [{"content": "hi"}],
                                      [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]])
def test_bad_messages(messages: object) -> None:
    with pytest.raises(ApiError) as caught:
        parse_chat({"model": "m", "messages": messages}, "m")
    assert caught.value.status == 400 and caught.value.param.startswith("messages")


def test_the_token_budget() -> None:
    limits = Limits(max_tokens=50)
    chat, text = Job("x", None, chat=True), Job("x", 30)
    assert resolve_max_tokens(chat, 100, 128, limits) == 28  # chat: the rest of the context
    assert resolve_max_tokens(chat, 10, 128, limits) == 50  # ... capped
    assert resolve_max_tokens(text, 98, 128, limits) == 30
    for job, prompt_tokens, param in [(text, 99, "max_tokens"), (text, 128, "prompt"), (chat, 128, "messages"),
                                      (Job("x", 51), 1, "max_tokens")]:
        with pytest.raises(ApiError) as caught:
            resolve_max_tokens(job, prompt_tokens, 128, limits)
        assert caught.value.param == param


def _reader(texts: dict[int, tuple[str, str]]):
    return lambda tokens, final: texts[len(tokens)]


def test_the_stream_holds_back_what_may_change_and_sends_each_piece_once() -> None:
    sent: list[tuple[str, str]] = []
    texts = {1: ("", "ab"), 2: ("", "abc\ufffd"), 3: ("", "abcé, x"), 4: ("", "abcé, xSTOP tail")}
    stream = TextStream(_reader(texts), ("STOP",), lambda piece: sent.append(piece) or True)
    assert [stream.watch(0, [0] * n) for n in (1, 2, 3)] == [False, False, False]
    assert sent == [("", "a"), ("", "bcé")]  # three characters kept back: "STOP" may start there
    assert stream.watch(0, [0] * 4) is True and stream.stopped
    assert stream.finish([0] * 4) == ("", "abcé, x")
    assert "".join(c for _, c in sent) == "abcé, x"
    plain: list[tuple[str, str]] = []
    partial = TextStream(_reader({1: ("th\ufffd", "x\ufffd"), 2: ("thé", "x")}), (), lambda p: plain.append(p) or True)
    partial.watch(0, [0])
    assert plain == [("th", "x")]  # U+FFFD: a character whose bytes are still coming
    assert partial.finish([0, 0]) == ("thé", "x") and plain[-1] == ("é", "")


def test_a_client_that_goes_away_stops_decoding() -> None:
    stream = TextStream(_reader({1: ("why", ""), 2: ("why not", "")}), (), lambda piece: False)
    assert stream.watch(0, [0]) is True and stream.gone
    assert stream.watch(0, [0, 0]) is True  # nothing more is sent to it


def test_think_mode_keeps_back_a_cue_being_written(taught) -> None:
    """A model that answers at once in think mode may write the cue itself; it is dropped, never sent in
    part. Here the model is steered by a prompt whose body it continues with the cue."""
    job = Job("Count:\nAnswer:", 10, temperature=0.0, mode="think")
    prepared = prepare(taught, job)
    assert taught.tokenizer.decode(prepared.ids[1:]) == "Count:"
    cue_tokens = taught.tokenizer.encode("\nAnswer:")
    assert prepared.read(cue_tokens[:2], False) == ("", "")
    assert prepared.read([*cue_tokens, *taught.tokenizer.encode(" 9")], False) == ("", " 9")
    pieces: list[tuple[str, str]] = []
    done = generate(taught, job, prepared, 10, lambda piece: pieces.append(piece) or True)
    assert "".join(c for _, c in pieces) == done.content and done.reasoning == ""
