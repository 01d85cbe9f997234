"""The HTTP face: the standard library's ``ThreadingHTTPServer`` answering OpenAI's routes.

``GET /v1/models`` (and ``/v1/models/NAME``), ``POST /v1/completions``, ``POST /v1/chat/completions`` and
``GET /health``. Every refusal is JSON in OpenAI's error shape: a body that is too large (413), has no
length (411) or is not a JSON object (400), an unknown route (404), an unknown model (404), a request over
the concurrency limit (429, with ``Retry-After``). A client that stalls while sending or reading is
dropped after ``Limits.read_timeout_s``. A stream is server-sent events (``data: {chunk}`` then
``data: [DONE]``) over chunked transfer encoding; a client that goes away stops its decoding.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from agent_forge.serve.api import (
    ApiError,
    Job,
    Limits,
    choice,
    envelope,
    model_card,
    model_list,
    parse_chat,
    parse_completion,
    response_id,
    usage,
)
from agent_forge.serve.generation import Backend, Completion, Prepared, generate, prepare, resolve_max_tokens

ROUTES = {"/v1/completions": parse_completion, "/v1/chat/completions": parse_chat}
Log = Callable[[str], None]


class ForgeServer(ThreadingHTTPServer):
    """One served model, its limits, and the slots that bound the requests inside at once."""

    daemon_threads = True

    def __init__(self, backend: Backend, limits: Limits, host: str = "127.0.0.1", port: int = 0,
                 log: Log | None = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), ApiHandler)
        self.backend, self.limits, self.log = backend, limits, log
        self.slots = threading.BoundedSemaphore(limits.max_concurrent)
        self.created = int(time.time())

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request is no error; anything else is logged with its traceback."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        (self.log or sys.stderr.write)(f"error serving {client_address}:\n{traceback.format_exc()}")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{f'[{host}]' if ':' in str(host) else host}:{port}/v1"


@contextmanager
def running(backend: Backend, limits: Limits | None = None, host: str = "127.0.0.1", port: int = 0,
            log: Log | None = None) -> Iterator[ForgeServer]:
    """A server answering on a background thread (port 0: a free one) until the block ends."""
    server = ForgeServer(backend, limits or Limits(), host, port, log)
    thread = threading.Thread(target=server.serve_forever, name="agent-forge-serve", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for JSON answers; a stream is chunked
    disable_nagle_algorithm = True  # headers and body go out as separate writes: Nagle + delayed ACK cost 40 ms
    server: ForgeServer
    server_version = "agent-forge"

    def setup(self) -> None:
        self.timeout = self.server.limits.read_timeout_s  # applied to the socket by StreamRequestHandler
        self.streaming = False
        super().setup()

    # ---- routes ----------------------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        name, created = self.server.backend.name, self.server.created
        if path == "/v1/models":
            self._json(200, model_list(name, created))
        elif path.startswith("/v1/models/"):
            wanted = unquote(path.removeprefix("/v1/models/"))
            listed = [card["id"] for card in model_list(name, created)["data"]]
            if wanted not in listed:
                self._error(ApiError(404, f"model '{wanted}' is not served here; GET /v1/models lists the "
                                          "names", "model", "model_not_found"))
            else:
                self._json(200, model_card(wanted, created))
        elif path == "/health":
            self._json(200, {"status": "ok", "model": name})
        else:
            self._error(ApiError(404, f"no route GET {path}; see /v1/models", code="not_found"))

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            if path not in ROUTES:
                self.close_connection = True  # the body is left unread
                raise ApiError(404, f"no route POST {path}; use /v1/completions or /v1/chat/completions",
                               code="not_found")
            body = self._read_json()
            if not self.server.slots.acquire(blocking=False):
                raise ApiError(429, f"the server is busy: {self.server.limits.max_concurrent} requests are "
                               "in progress, the limit; retry shortly", code="rate_limit_exceeded",
                               kind="requests")
            try:
                self._complete(ROUTES[path](body, self.server.backend.name))
            finally:
                self.server.slots.release()
        except ApiError as error:
            self._error(error)
        except Exception:  # a bug: the client gets a 500 in OpenAI's shape, the log the traceback
            (self.server.log or sys.stderr.write)(traceback.format_exc())
            self.close_connection = True
            if not self.streaming:
                self._error(ApiError(500, "internal error; see the server log", kind="server_error"))

    def _refuse_method(self) -> None:
        self.close_connection = True
        self._error(ApiError(405, f"method {self.command} is not allowed; use GET or POST", code="not_allowed"))

    do_PUT = do_DELETE = do_PATCH = _refuse_method

    # ---- request ---------------------------------------------------------------------------------------

    def _read_json(self) -> dict[str, Any]:
        """The body, bounded in size and in time, parsed as a JSON object."""
        limit = self.server.limits.max_body_bytes
        length = self.headers.get("Content-Length")
        if length is None or self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "send the body with a Content-Length header (no chunked uploads)")
        if not length.isdigit():
            self.close_connection = True
            raise ApiError(400, f"Content-Length {length!r} is not a byte count")
        if int(length) > limit:
            self.close_connection = True
            raise ApiError(413, f"the request body is {int(length)} bytes; this server accepts at most {limit}",
                           code="request_too_large")
        raw = self._read_body(int(length))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise ApiError(400, f"the body is not valid JSON ({str(exc)[:80]}); send a JSON object") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def _read_body(self, length: int) -> bytes:
        """``length`` bytes within ``read_timeout_s`` in all (a per-read timeout alone would let a client
        that sends a byte now and then hold the connection for as long as it likes)."""
        seconds = self.server.limits.read_timeout_s
        deadline, parts, missing = time.monotonic() + seconds, [], length
        while missing:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                self.connection.settimeout(left)
                part = self.rfile.read1(missing)
            except TimeoutError:
                self.close_connection = True
                raise ApiError(408, f"the body did not arrive within {seconds:g} s", code="request_timeout") from None
            if not part:
                self.close_connection = True
                raise ApiError(400, f"the body ended {missing} bytes short of its Content-Length")
            parts.append(part)
            missing -= len(part)
        self.connection.settimeout(seconds)
        return b"".join(parts)

    # ---- answers ---------------------------------------------------------------------------------------

    def _complete(self, job: Job) -> None:
        backend = self.server.backend
        prepared = prepare(backend, job)
        max_tokens = resolve_max_tokens(job, len(prepared.ids), backend.context, self.server.limits)
        ident = response_id(job.chat)
        if job.stream:
            self._stream(job, ident, prepared, max_tokens)
            return
        done = generate(backend, job, prepared, max_tokens)
        item = choice(job, done.reasoning, done.content, done.finish_reason, False, done.extra)
        self._json(200, {**envelope(job, ident, [item], False),
                         "usage": usage(done.prompt_tokens, done.completion_tokens)})

    def _stream(self, job: Job, ident: str, prepared: Prepared, max_tokens: int) -> None:
        """Server-sent events: (chat) the role, then each new piece, then the finish reason (and usage when
        asked), then ``[DONE]``."""
        self.send_response(200)
        for header, value in (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                              ("Transfer-Encoding", "chunked")):
            self.send_header(header, value)
        self.end_headers()
        self.streaming = True
        if job.chat:
            self._event(envelope(job, ident, [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "finish_reason": None}], True))

        def send(pieces: tuple[str, str]) -> bool:
            return self._event(envelope(job, ident, [choice(job, *pieces, None, True)], True))

        done = generate(self.server.backend, job, prepared, max_tokens, send)
        self._finish_stream(job, ident, done)

    def _finish_stream(self, job: Job, ident: str, done: Completion) -> None:
        self._event(envelope(job, ident, [choice(job, "", "", done.finish_reason, True, done.extra)], True))
        if job.include_usage:
            self._event({**envelope(job, ident, [], True), "usage": usage(done.prompt_tokens,
                                                                          done.completion_tokens)})
        if self._chunk(b"data: [DONE]\n\n"):
            self._chunk(b"")  # the empty chunk ends the body

    def _event(self, data: dict[str, Any]) -> bool:
        return self._chunk(f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode())

    def _chunk(self, data: bytes) -> bool:
        """One chunk of a chunked body; False when the client has gone."""
        try:
            self.wfile.write(f"{len(data):X}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
            return True
        except OSError:
            self.close_connection = True
            return False

    def _json(self, status: int, data: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for header, value in (headers or {}).items():
            self.send_header(header, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        try:
            self.wfile.write(payload)
        except OSError:
            self.close_connection = True

    def _error(self, error: ApiError) -> None:
        self._json(error.status, error.body(), {"Retry-After": "1"} if error.status == 429 else None)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own refusals (a malformed request line, headers too long) as JSON."""
        self.close_connection = True
        self._error(ApiError(code, message or HTTPStatus(code).phrase))

    def log_message(self, format: str, *args: Any) -> None:
        self._log(f"{self.address_string()} {format % args}")

    def _log(self, line: str) -> None:
        if self.server.log is not None:
            self.server.log(line.rstrip())
