"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint folder (written atomically) holds the model weights (safetensors), the optimizer and scheduler
state (``torch.save``; loaded with ``weights_only=True``), every RNG state, the step/epoch/data position and the
resolved config, with the sha256 of each file in ``state.json``. Only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import json
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from agent_forge.errors import ArtifactCorruptError
from agent_forge.storage.atomic import atomic_dir, recover_dir, sha256_file

STATE = "state.json"


@dataclass
class TrainerState:
    """Counters a training loop needs to continue: step, epoch, data position and free-form extras."""

    step: int = 0
    epoch: int = 0
    data_position: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """RNG states of torch (tensors) and of Python/NumPy (JSON-able)."""
    tensors = {"torch_cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"torch_cuda_{i}"] = state
    py_state = random.getstate()
    np_state = np.random.get_state()
    return tensors, {
        "python": [py_state[0], list(py_state[1]), py_state[2]],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }


def restore_rng(tensors: dict[str, torch.Tensor], states: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch_cpu"])
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith("torch_cuda_")]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    py = states["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npy = states["numpy"]
    np.random.set_state((npy[0], np.array(npy[1], dtype=np.uint32), *npy[2:]))


class CheckpointManager:
    """Save, list, verify and load the checkpoints of one training run."""

    def __init__(self, folder: Path, keep_last: int = 2, recover: bool = True) -> None:
        """``recover=False`` for readers that must not tidy up (non-zero ranks while rank 0 writes)."""
        self.folder = Path(folder)
        self.keep_last = keep_last
        self.recover = recover

    def path_for(self, step: int) -> Path:
        return self.folder / f"step_{step:08d}"

    def save(self, model: nn.Module, optimizer: torch.optim.Optimizer | None, state: TrainerState,
             config: dict[str, Any], scheduler: Any = None) -> Path:
        target = self.path_for(state.step)
        rng_tensors, rng_json = capture_rng()
        with atomic_dir(target) as tmp:
            save_model(model, str(tmp / "model.safetensors"))
            save_file(rng_tensors, str(tmp / "rng.safetensors"))
            torch.save({"optimizer": optimizer.state_dict() if optimizer else None,
                        "scheduler": scheduler.state_dict() if scheduler else None}, tmp / "optimizer.pt")
            files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            payload = {"trainer": state.__dict__, "rng": rng_json, "config": config, "files": files}
            (tmp / STATE).write_text(json.dumps(payload, sort_keys=True, default=str), encoding="utf-8")
        self._prune()
        return target

    def _prune(self) -> None:
        for old in self.list()[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def list(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        if self.recover:
            for path in self.folder.glob("step_*"):
                recover_dir(path.with_name(path.name.split(".")[0]))
        return sorted(p for p in self.folder.glob("step_*") if p.is_dir() and "." not in p.name)

    def latest(self) -> Path | None:
        """The newest checkpoint that verifies; corrupt ones are skipped (and reported by ``verify``)."""
        for path in reversed(self.list()):
            try:
                self.verify(path)
                return path
            except ArtifactCorruptError:
                continue
        return None

    @staticmethod
    def verify(path: Path) -> dict[str, Any]:
        try:
            payload = json.loads((path / STATE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ArtifactCorruptError(f"checkpoint {path} has an unreadable state file ({exc.__class__.__name__})",
                                       "delete that checkpoint folder; resume uses the previous one") from None
        for name, expected in payload["files"].items():
            if not (path / name).is_file() or sha256_file(path / name) != expected:
                raise ArtifactCorruptError(f"checkpoint file {path / name} does not match its checksum",
                                           "delete that checkpoint folder; resume uses the previous one")
        return payload

    def load(self, path: Path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
             scheduler: Any = None) -> tuple[TrainerState, dict[str, Any]]:
        """Restore weights, optimizer, scheduler and RNG; return the trainer state and the stored config."""
        payload = self.verify(path)
        load_model(model, str(path / "model.safetensors"))
        opt = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
        if optimizer is not None and opt["optimizer"] is not None:
            optimizer.load_state_dict(opt["optimizer"])
        if scheduler is not None and opt["scheduler"] is not None:
            scheduler.load_state_dict(opt["scheduler"])
        restore_rng(load_file(str(path / "rng.safetensors")), payload["rng"])
        return TrainerState(**payload["trainer"]), payload["config"]

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
