"""A full disk becomes DiskFullError with its hint wherever the write comes from (issue 25, F11).

The disk is really full: a small tmpfs is mounted for each test (root only; skipped elsewhere).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from agent_forge.errors import DiskFullError
from agent_forge.storage.atomic import atomic_dir

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def tiny_disk(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(folder)], check=False)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


BIG = {"w": torch.zeros(1 << 18)}  # 1 MiB, twice the disk


@pytest.mark.parametrize(
    "write",
    [
        lambda folder: save_file(BIG, str(folder / "model.safetensors")),  # SafetensorError "os error 28"
        lambda folder: torch.save(BIG, folder / "optimizer.pt"),  # RuntimeError without an errno
        lambda folder: (folder / "state.json").write_bytes(bytes(1 << 20)),  # OSError ENOSPC
    ],
    ids=["safetensors", "torch.save", "plain-write"],
)
def test_a_full_disk_inside_an_atomic_folder_is_disk_full_and_keeps_the_old_version(tiny_disk, write):
    target = tiny_disk / "model"
    with atomic_dir(target) as folder:
        (folder / "old.txt").write_text("previous")
    with pytest.raises(DiskFullError) as error, atomic_dir(target) as folder:
        write(folder)
    assert "free disk space" in str(error.value) and "\n" not in str(error.value)
    assert (target / "old.txt").read_text() == "previous" and sorted(p.name for p in tiny_disk.iterdir()) == ["model"]


def test_a_run_on_a_full_disk_ends_with_one_line_and_exit_2(tiny_disk):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "agent_forge", "--workspace", str(tiny_disk / "ws"), "--quiet", "run"]
    done = subprocess.run([*command, "--preset", "smoke"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert done.returncode == 2, done.stderr[-3000:]
    assert "disk full" in done.stderr and "free disk space" in done.stderr and "Traceback" not in done.stderr
