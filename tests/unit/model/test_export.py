"""The export path: the whole model, memory recurrence and halting included, traces without data-dependent
control flow (torch.export, fast) and runs in onnxruntime with equal logits (slow: about 15 s of export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from model_builders import build_model, random_ids


class LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, use_cache=False).logits


def halting_model() -> torch.nn.Module:
    """Static-ACT smoke model whose halting step differs between positions."""
    model = build_model(seed=0, static_act=True).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.act_head.proj.weight, std=0.5)
    return model


def test_torch_export_traces_the_whole_model_and_matches_eager() -> None:
    model = halting_model()
    ids = random_ids(1, 40)
    program = torch.export.export(LogitsOnly(model).eval(), (ids,))
    other = random_ids(1, 40, seed=1)  # the graph is not specialised to the traced tokens
    with torch.no_grad():
        for tokens in (ids, other):
            expected = model(tokens, use_cache=False)
            assert len(set(expected.halt_steps.flatten().tolist())) > 1
            torch.testing.assert_close(program.module()(tokens), expected.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    model = halting_model()
    ids = random_ids(1, 40)
    path = tmp_path / "model.onnx"
    torch.onnx.export(LogitsOnly(model).eval(), (ids,), str(path), dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    (logits,) = session.run(None, {session.get_inputs()[0].name: ids.numpy()})
    with torch.no_grad():
        expected = model(ids, use_cache=False)
    assert len(set(expected.halt_steps.flatten().tolist())) > 1
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=1e-4)
