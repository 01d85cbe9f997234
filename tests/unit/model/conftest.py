"""Model-test fixtures; the model builders live in `model_builders`."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny models gain nothing from a second thread, and on a shared CPU an OpenMP barrier waiting for a
    descheduled thread can stall a step for seconds; restore the caller's setting afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
