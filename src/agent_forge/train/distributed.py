"""PyTorch's own distributed stack (D7): process group set-up under torchrun, rank queries, DDP wrapping.

Nothing here replaces torch.distributed: under ``torchrun`` the environment carries RANK / WORLD_SIZE /
MASTER_ADDR, ``init_from_env`` opens the process group (gloo on CPU, NCCL on GPU) and training phases
wrap their model in DistributedDataParallel. Without torchrun everything is a single process.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> bool:
    """Open the default process group when launched by torchrun; True when distributed."""
    if not launched_by_torchrun():
        return False
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" and dist.is_nccl_available() else "gloo"
        dist.init_process_group(backend=backend)
    return True


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """DistributedDataParallel when a process group is open, the model itself otherwise."""
    if world()[1] == 1:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def broadcast_object(obj: Any) -> Any:
    """Rank 0's value of ``obj`` on every rank (a session id, a decision); ``obj`` itself when alone."""
    if world()[1] == 1:
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]
