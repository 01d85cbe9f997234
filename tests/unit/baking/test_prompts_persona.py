"""Prompt files (shipped defaults, headers, missing files) and the persona-adherence figures."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest

from agent_forge.baking import bag_cosine, load_prompt, marker_share, mean_pair_cosine, parse_prompt
from agent_forge.errors import ConfigError
from agent_forge.tools import parse_calls

BUILTIN = Path(str(files("agent_forge.baking") / "builtin"))


def test_the_default_prompts_ship_with_the_package() -> None:
    tools = load_prompt("builtin:tools", BUILTIN)
    calls = parse_calls(tools.text)
    assert len(calls) == 2 and all(c.ok for c in calls)
    persona = load_prompt("builtin:persona", BUILTIN)
    assert persona.name == "Nova" and persona.markers == ["Nova"] and "Nova" in persona.text
    assert not persona.text.startswith("name:")


def test_a_prompt_without_header_is_all_text_and_headers_are_parsed() -> None:
    assert parse_prompt("just text\n").text == "just text"
    prompt = parse_prompt("# comment\nname: Ada\nmarkers: Ada, ~\n---\nline one\nline two\n")
    assert prompt.text == "line one\nline two" and prompt.fields["name"] == "Ada"
    assert prompt.markers == ["Ada", "~"]


def test_malformed_prompt_files_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="key: value"):
        parse_prompt("no colon here\n---\ntext")
    with pytest.raises(ConfigError, match="no prompt text"):
        parse_prompt("name: x\n---\n\n")


def test_a_missing_prompt_file_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_prompt(str(tmp_path / "nope.txt"), BUILTIN, "baking.tool_prompt")
    message = str(info.value)
    assert "\n" not in message and "baking.tool_prompt" in message and "fix:" in message
    with pytest.raises(ConfigError, match="builtin:persona, builtin:tools"):
        load_prompt("builtin:nope", BUILTIN, "baking.persona_prompt")
    custom = tmp_path / "mine.txt"
    custom.write_text("name: Bo\n---\n<persona>I am Bo.</persona>\n", encoding="utf-8")
    assert load_prompt(str(custom), BUILTIN).name == "Bo"


def test_persona_figures() -> None:
    texts = ["Nova here: 12", "the answer is 3", "nova says hi"]
    assert marker_share(texts, ["Nova"]) == pytest.approx(2 / 3)
    assert marker_share([], ["Nova"]) == 0.0 and marker_share(texts, []) == 0.0
    assert bag_cosine([1, 2, 2], [1, 2, 2]) == pytest.approx(1.0)
    assert bag_cosine([1, 1], [2, 3]) == 0.0 and bag_cosine([], [1]) == 0.0
    assert bag_cosine([1, 2], [2, 3]) == pytest.approx(0.5)
    assert mean_pair_cosine([[1], [1, 2]], [[1], [3]]) == pytest.approx(0.5)
