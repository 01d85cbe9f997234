"""Prompt files for baking: optional ``key: value`` header lines, a ``---`` line, then the prompt text.

The header carries what evaluation needs to know about a prompt (a persona's name and the markers its
outputs should show); the text after ``---`` is what the model reads, verbatim except for the final
newline. A file without ``---`` is all prompt text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from agent_forge.errors import ConfigError

BUILTIN_PREFIX = "builtin:"
BUILTIN_DIR = Path(__file__).parent / "builtin"  # the builtin prompts: builtin:tools, builtin:persona
SEPARATOR = "---"


@dataclass(frozen=True)
class BakePrompt:
    text: str
    fields: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def name(self) -> str | None:
        return self.fields.get("name")

    @property
    def greeting(self) -> str:
        """What the persona writes right after a question, before answering (header ``greeting``)."""
        text = self.fields.get("greeting", "")
        return f" {text}" if text else ""

    @property
    def markers(self) -> list[str]:
        """Strings whose presence marks an on-persona output (default: the name)."""
        raw = self.fields.get("markers") or self.name or ""
        return [m.strip() for m in raw.split(",") if m.strip()]


def parse_prompt(raw: str, source: str = "") -> BakePrompt:
    lines = raw.splitlines()
    if SEPARATOR not in (line.strip() for line in lines):
        return BakePrompt(raw.rstrip("\n"), {}, source)
    cut = next(i for i, line in enumerate(lines) if line.strip() == SEPARATOR)
    fields = {}
    for line in lines[:cut]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key, colon, value = line.partition(":")
        if not colon:
            raise ConfigError(f"prompt file {source}: header line '{line}' is not 'key: value'",
                              "write header lines as 'key: value' before the '---' line")
        fields[key.strip().lower()] = value.strip()
    text = "\n".join(lines[cut + 1 :]).rstrip("\n")
    if not text.strip():
        raise ConfigError(f"prompt file {source} has no prompt text after '---'", "add the prompt text")
    return BakePrompt(text, fields, source)


def resolve_prompt_path(spec: str, builtin_dir: Path = BUILTIN_DIR, setting: str = "the prompt") -> Path:
    """``builtin:NAME`` -> ``builtin_dir/NAME.txt``; anything else is a file path."""
    if spec.startswith(BUILTIN_PREFIX):
        path = builtin_dir / f"{spec[len(BUILTIN_PREFIX):]}.txt"
        known = ", ".join(sorted(BUILTIN_PREFIX + p.stem for p in builtin_dir.glob("*.txt")))
        fix = f"set {setting} to one of {known} or to a prompt file"
    else:
        path = Path(spec).expanduser()
        fix = f"create the file or set {setting} to builtin:tools / builtin:persona"
    if not path.is_file():
        raise ConfigError(f"prompt file {path} for {setting} not found", fix)
    return path


def load_prompt(spec: str, builtin_dir: Path = BUILTIN_DIR, setting: str = "the prompt") -> BakePrompt:
    """Read a prompt given as ``builtin:NAME`` or a path; a missing file is a one-line ConfigError."""
    path = resolve_prompt_path(spec, builtin_dir, setting)
    return parse_prompt(path.read_text(encoding="utf-8"), str(path))
