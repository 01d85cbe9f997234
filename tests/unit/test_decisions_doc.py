"""Every decision number and seed-spec section the code cites is defined in docs/decisions.md."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "decisions.md"
CITING = [ROOT / "src", ROOT / "tests"]
SUFFIXES = {".py", ".yaml", ".md", ".txt"}
DECISION = re.compile(r"\bD(\d+)\b")
# a section number of chapters 1-9 ("spec 2.2.5"); "spec 0.80" or "spec 20 MB" are values, not sections
SPEC = re.compile(r"\bspec ([1-9]\.\d+(?:\.\d+)*)")


def _cited(pattern: re.Pattern[str]) -> dict[str, set[str]]:
    """Cited number -> the files citing it."""
    found: dict[str, set[str]] = {}
    for folder in CITING:
        for path in folder.rglob("*"):
            if path.suffix in SUFFIXES and path.is_file():
                for number in pattern.findall(path.read_text(encoding="utf-8", errors="replace")):
                    found.setdefault(number, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_cited_decision_is_defined() -> None:
    defined = set(re.findall(r"^## D(\d+)\.", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE))
    missing = {f"D{n}": sorted(files)[:3] for n, files in _cited(DECISION).items() if n not in defined}
    assert not missing, f"cited but not defined in docs/decisions.md: {missing}"


def test_every_cited_spec_section_is_explained() -> None:
    table = set(re.findall(r"^\| (\d+(?:\.\d+)+) \|", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE))
    missing = {f"spec {n}": sorted(files)[:3] for n, files in _cited(SPEC).items() if n not in table}
    assert not missing, f"cited but not explained in docs/decisions.md: {missing}"


def test_the_decision_scan_sees_citations() -> None:
    """Guards the scan itself: the code is known to cite the before/after rule and the optimizer table."""
    cited = _cited(DECISION)
    assert {"6", "11"} <= set(cited)
