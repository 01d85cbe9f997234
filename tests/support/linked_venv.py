"""A fresh virtual environment that holds only the named distributions and what they require.

Like the bundle runtime's test (tests/unit/export/test_edge_standalone.py) it is a new ``venv`` without the
system site packages, run with ``python -I`` (no PYTHONPATH, no user site), so nothing of agent_forge or of
its other dependencies is importable there. The distributions are not installed again with pip but linked
from this environment, file tree by file tree as their RECORD lists them: pip-installing torch and
transformers into a new venv took 4.5 minutes here (torch alone is 750 MB unpacked, 68 s just to copy on
this disk), linking them takes about a second, and the code that runs is the same installed code.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name


def requirement_closure(names: list[str]) -> dict[str, metadata.Distribution]:
    """The installed distributions of ``names`` and of everything they require (extras left out)."""
    found: dict[str, metadata.Distribution] = {}
    todo = list(names)
    while todo:
        requirement = Requirement(todo.pop())
        key = canonicalize_name(requirement.name)
        if key in found:
            continue
        found[key] = dist = metadata.distribution(requirement.name)
        for text in dist.requires or []:
            needed = Requirement(text)
            if needed.marker is None or needed.marker.evaluate({"extra": ""}):
                todo.append(needed.name)
    return found


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The files and folders a distribution put straight into site-packages."""
    if dist.files is None:
        raise RuntimeError(f"{dist.metadata['Name']} has no RECORD: cannot tell its files")
    return {f.parts[0] for f in dist.files if f.parts[0] not in ("..", "__pycache__")}


def linked_venv(folder: Path, distributions: list[str]) -> Path:
    """Create a venv at ``folder`` holding ``distributions`` (and their requirements); returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=300)
    site = Path(sysconfig.get_path("purelib", vars={"base": str(folder), "platbase": str(folder)}))
    for dist in requirement_closure(distributions).values():
        for entry in sorted(_top_level_entries(dist)):
            link = site / entry
            if not link.exists():
                link.symlink_to(Path(str(dist.locate_file(entry))))
    return folder / "bin" / "python"
