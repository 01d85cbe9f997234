"""The direction of imports (docs/design/overview.md): phases never import each other, the faces (cli, ui)
reach the phases only through the composition root, and no agent_forge module imports itself back.

Imports are read with ``ast`` from the source, so every import counts: at the top, inside a function (the
lazy ones) or under ``if TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "agent_forge"
COMPOSITION_ROOT = "agent_forge.cli.composition"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _target(name: str) -> str | None:
    """The agent_forge module an imported name lives in (``a.b.c`` -> ``a.b`` when ``c`` is an attribute)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, level: int, name: str | None) -> str:
    """``from ..x import y`` inside ``module`` -> the absolute name of ``..x``."""
    if level == 0:
        return name or ""
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    for _ in range(level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{name}" if name else package


def imports_of(module: str) -> set[str]:
    """The agent_forge modules ``module`` imports."""
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.level, node.module)
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in map(_target, names) if t and t.startswith("agent_forge") and t != module)
    return found


GRAPH = {module: imports_of(module) for module in MODULES}


def _is_phase(module: str) -> bool:
    return module.startswith("agent_forge.phases.") and module != "agent_forge.phases.common"


def test_no_phase_imports_another_phase() -> None:
    wrong = {m: sorted(t for t in GRAPH[m] if _is_phase(t) or t == "agent_forge.phases")
             for m in GRAPH if m.startswith("agent_forge.phases.")}
    assert not {m: t for m, t in wrong.items() if t}


def test_faces_reach_phases_only_through_the_composition_root() -> None:
    faces = [m for m in GRAPH if m.startswith(("agent_forge.cli", "agent_forge.ui")) and m != COMPOSITION_ROOT]
    wrong = {m: sorted(t for t in GRAPH[m] if t.startswith("agent_forge.phases")) for m in faces}
    assert not {m: t for m, t in wrong.items() if t}
    assert any(t.startswith("agent_forge.phases") for t in GRAPH[COMPOSITION_ROOT])


def test_below_the_phases_nothing_imports_them() -> None:
    above = ("agent_forge.phases", "agent_forge.cli", "agent_forge.ui", "agent_forge.__main__")
    wrong = {m: sorted(t for t in GRAPH[m] if t.startswith(("agent_forge.phases", "agent_forge.cli",
                                                              "agent_forge.ui")))
             for m in GRAPH if not m.startswith(above)}
    assert not {m: t for m, t in wrong.items() if t}


def _cycle_from(start: str) -> list[str] | None:
    """A path start -> ... -> start through the import graph, if there is one (depth-first)."""
    stack, seen = [(start, [start])], set()
    while stack:
        module, path = stack.pop()
        for target in GRAPH[module]:
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return None


def test_no_import_cycle() -> None:
    cycles = [cycle for cycle in map(_cycle_from, GRAPH) if cycle]
    assert not cycles, cycles[:3]
