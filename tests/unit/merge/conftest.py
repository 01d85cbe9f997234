"""Run the merge tests single-threaded: on a shared 2-core machine OpenMP threads contend, and a tiny
model's step took about 60 ms with 2 threads against 1 ms with one."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def single_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
