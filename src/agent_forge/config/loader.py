"""Load a preset, merge a user file and ``--set`` overrides, and validate into a ``PipelineConfig``.

Every failure becomes a ``ConfigError`` whose message names the offending key, so the CLI can print a
single line instead of a pydantic traceback.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from agent_forge.config.schema import PipelineConfig
from agent_forge.errors import ConfigError

PRESET_PACKAGE = "agent_forge.config.presets"


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
    data = _parse_yaml(text, f"preset {name}")
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
    return _parse_yaml(text, f"config file {path}")


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
    return nested


def validate_config(data: dict[str, Any]) -> PipelineConfig:
    """Validate a merged mapping; the first problem becomes a one-line ConfigError naming its key."""
    try:
        return PipelineConfig.model_validate(data)
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
