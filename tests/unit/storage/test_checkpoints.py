import random
from pathlib import Path

import numpy as np
import pytest
import torch

from agent_forge.errors import ArtifactCorruptError
from agent_forge.storage.checkpoints import CheckpointManager, TrainerState


def _setup():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_restores_everything(tmp_path: Path) -> None:
    model, opt = _setup()
    manager = CheckpointManager(tmp_path, keep_last=2)
    random.seed(5)
    np.random.seed(5)
    manager.save(model, opt, TrainerState(step=3, epoch=1, data_position=7, extra={"a": [1]}), {"lr": 1})
    expected = (torch.rand(1), random.random(), np.random.rand())
    model2, opt2 = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2)), None
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    state, config = manager.load(manager.latest(), model2, opt2)
    assert (state.step, state.epoch, state.data_position, state.extra) == (3, 1, 7, {"a": [1]})
    assert config == {"lr": 1}
    pairs = zip(model.state_dict().values(), model2.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert torch.equal(opt2.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert (torch.rand(1), random.random(), np.random.rand()) == expected


def test_keep_last_and_corrupt_skipped(tmp_path: Path) -> None:
    model, opt = _setup()
    manager = CheckpointManager(tmp_path, keep_last=2)
    for step in (1, 2, 3):
        manager.save(model, opt, TrainerState(step=step), {})
    assert [p.name for p in manager.list()] == ["step_00000002", "step_00000003"]
    newest = manager.list()[-1] / "model.safetensors"
    newest.write_bytes(newest.read_bytes()[:-3])
    assert manager.latest().name == "step_00000002"
    with pytest.raises(ArtifactCorruptError):
        manager.verify(manager.list()[-1])
    (manager.list()[0] / "state.json").write_text("{")
    assert manager.latest() is None
    manager.clear()
    assert manager.list() == []
