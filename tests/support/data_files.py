"""Small local data files in the Hub's formats, written by the tests that need them."""

from __future__ import annotations

import json
from pathlib import Path


def write_arc_file(folder: Path, rows: int) -> Path:
    """An ARC-Easy JSONL file of ``rows`` distinct two-choice questions (answer A)."""
    lines = [
        json.dumps({"id": f"T{i}", "question": f"Which number is {i}?", "answerKey": "A",
                    "choices": {"text": [str(i), str(i + 1)], "label": ["A", "B"]}})
        for i in range(rows)
    ]
    path = folder / "arc.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
