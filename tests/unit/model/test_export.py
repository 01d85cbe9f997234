"""The export path: the whole model, memory recurrence included, runs in onnxruntime with equal logits."""

from __future__ import annotations

import numpy as np
import onnxruntime
import torch
from model_builders import build_model, random_ids


class LogitsOnly(torch.nn.Module):
    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids, use_cache=False).logits


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    model = build_model(seed=0, static_act=True).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.act_head.proj.weight, std=0.5)  # halting differs between positions
    ids = random_ids(1, 40)
    path = tmp_path / "model.onnx"
    torch.onnx.export(LogitsOnly(model), (ids,), str(path), dynamo=True, verbose=False)
    session = onnxruntime.InferenceSession(str(path))
    (logits,) = session.run(None, {session.get_inputs()[0].name: ids.numpy()})
    with torch.no_grad():
        expected = model(ids, use_cache=False)
    assert len(set(expected.halt_steps.flatten().tolist())) > 1
    np.testing.assert_allclose(logits, expected.logits.numpy(), atol=1e-4, rtol=1e-4)
