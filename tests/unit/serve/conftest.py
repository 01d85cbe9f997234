"""The taught model (``support.serve_model``) served on a free loopback port by the real server, and the
official ``openai`` client pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
import torch

from agent_forge.serve import Backend, ForgeServer, model_backend, running
from support.serve_model import COUNT_TEXT, LIMITS, NAME, THINK_TEXT, TOOL_TEXT, teach


@pytest.fixture(scope="session")
def taught() -> Backend:
    torch.set_num_threads(1)
    model, tokenizer = teach([TOOL_TEXT, THINK_TEXT, COUNT_TEXT])
    return model_backend(NAME, model, tokenizer)


@pytest.fixture(scope="module")
def server(taught: Backend) -> Iterator[ForgeServer]:
    with running(taught, LIMITS) as live:
        yield live


@pytest.fixture(scope="module")
def client(server: ForgeServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)
