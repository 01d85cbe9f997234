"""Load a preset, merge a user file and ``--set`` overrides, and validate into a ``PipelineConfig``.

Every failure becomes a ``ConfigError`` whose message names the offending key, so the CLI can print a
single line instead of a pydantic traceback.
"""

from __future__ import annotations

import copy
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent_forge.config.schema import KEY_ALIASES, SECTION_ALIASES, PipelineConfig
from agent_forge.errors import ConfigError

PRESET_PACKAGE = "agent_forge.config.presets"

# old names met so far in this process: the deprecation notice is printed for the first one only
_aliases_seen: set[str] = set()


def available_presets() -> list[str]:
    """Names of the presets shipped inside the package."""
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name[: -len(".yaml")] for f in files if f.name.endswith(".yaml"))


def preset_dict(name: str) -> dict[str, Any]:
    """The raw mapping of a shipped preset."""
    if name not in available_presets():
        raise ConfigError(
            f"unknown preset '{name}'", f"use one of: {', '.join(available_presets())}"
        )
    text = resources.files(PRESET_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")
    data = renamed_keys(_parse_yaml(text, f"preset {name}"))
    data["preset"] = name
    return data


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A user's YAML (or JSON) file as a mapping; missing or malformed files are ConfigErrors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} not found", "check the path given to --config")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read ({exc.__class__.__name__})",
                          "pass a readable UTF-8 YAML file") from exc
    return renamed_keys(_parse_yaml(text, f"config file {path}"))


def _parse_yaml(text: str, origin: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{origin} is not valid YAML{where}", "fix the syntax of that file") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must be a mapping of sections, got {type(data).__name__}",
                          "write it as 'section: {key: value}'")
    return data


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (lists and scalars are replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def parse_override(item: str) -> dict[str, Any]:
    """Turn ``a.b.c=value`` into ``{"a": {"b": {"c": value}}}`` with YAML typing of the value."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' has no '='", "write overrides as --set section.key=value")
    dotted, raw = item.split("=", 1)
    keys = [k.strip() for k in dotted.split(".")]
    if not all(keys):
        raise ConfigError(f"override '{item}' has an empty key", "write overrides as --set section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override '{item}' has an unreadable value", "quote the value") from exc
    nested: dict[str, Any] = {keys[-1]: value}
    for key in reversed(keys[:-1]):
        nested = {key: nested}
    return renamed_keys(nested)


def renamed_keys(data: dict[str, Any], notify: bool = True) -> dict[str, Any]:
    """``data`` with old section names (``phase4`` -> ``bitnet``) and old keys renamed to the current ones.

    Each layer (preset, file, ``--set``, stored session) is renamed before the layers merge, so an old
    ``--set`` key overrides the preset's new one. Where one layer spells a key both ways the current name wins.
    """
    renamed = dict(data)
    for old, new in SECTION_ALIASES.items():
        if old in renamed:
            _note_alias(old, new, notify)
            value, current = renamed.pop(old), renamed.get(new)
            both = isinstance(value, dict) and isinstance(current, dict)
            renamed[new] = deep_merge(value, current) if both else (value if current is None else current)
    for section, aliases in KEY_ALIASES.items():
        part = renamed.get(section)
        if isinstance(part, dict) and any(old in part for old in aliases):
            part = dict(part)
            for old, new in aliases.items():
                if old in part:
                    _note_alias(f"{section}.{old}", f"{section}.{new}", notify)
                    part.setdefault(new, part.pop(old))
            renamed[section] = part
    return renamed


def _note_alias(old: str, new: str, notify: bool) -> None:
    """One line on stderr the first time a user's config uses an old name (stored sessions stay quiet)."""
    if notify and not _aliases_seen:
        print(f"notice: config key '{old}' is now '{new}'; old names still load but are deprecated "
              f"(phase1..phase8 -> {', '.join(SECTION_ALIASES.values())})", file=sys.stderr)
    if notify:
        _aliases_seen.add(old)


def validate_config(data: dict[str, Any]) -> PipelineConfig:
    """Validate a merged mapping; the first problem becomes a one-line ConfigError naming its key.

    Old section and key names are accepted silently here: a session stored before a rename must resume.
    """
    try:
        return PipelineConfig.model_validate(renamed_keys(data, notify=False) if isinstance(data, dict) else data)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc), "correct that key in the preset, file or --set") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid configuration: {exc}", "correct the named value") from None


def _describe_validation_error(exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first.get("loc", ())) or "(top level)"
    if first.get("type") == "extra_forbidden":
        return f"unknown config key '{key}'"
    given = first.get("input")
    shown = repr(given) if not isinstance(given, dict) else "a mapping"
    if len(shown) > 60:
        shown = shown[:57] + "..."
    message = first.get("msg", "invalid value").replace("Value error, ", "")
    return f"config key '{key}': {message} (got {shown})"


def load_config(
    preset: str = "tiny",
    config_file: str | Path | None = None,
    overrides: list[str] | None = None,
) -> PipelineConfig:
    """Preset, then the user's file, then ``--set`` overrides, validated as one ``PipelineConfig``."""
    data = preset_dict(preset)
    if config_file is not None:
        data = deep_merge(data, read_config_file(config_file))
    for item in overrides or []:
        data = deep_merge(data, parse_override(item))
    return validate_config(data)


def config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config mappings (used to warn on resume)."""
    keys = sorted(set(old) | set(new))
    differing: list[str] = []
    for key in keys:
        dotted = f"{prefix}{key}"
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            differing.extend(config_diff(a, b, dotted + "."))
        elif a != b:
            differing.append(dotted)
    return differing
