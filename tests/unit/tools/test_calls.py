"""The call format parser: well-formed calls parse, bad ones are rejected safely, outcomes never raise."""

from __future__ import annotations

import pytest

from agent_forge.tools.calls import (
    ToolCall,
    execute,
    final_answer,
    format_call,
    last_call,
    parse_calls,
    parse_segment,
    results_in,
    same_answer,
)


def test_a_well_formed_call_parses_and_runs() -> None:
    (parsed,) = parse_calls("What is 2 + 3? Answer:<tool>calculator</tool><args>2 + 3</args><result>5</result> 5")
    assert parsed.ok and parsed.call == ToolCall("calculator", "2 + 3")
    outcome = execute(parsed)
    assert outcome.ok and outcome.value == "5" and outcome.result_text == "<result>5</result>"


@pytest.mark.parametrize(
    ("text", "error"),
    [("<tool>calculator<args>2</args>", "malformed"), ("<tool>calculator</tool>2 + 3</args>", "malformed"),
     ("<tool>calculator</tool><args>2 + 3", "malformed"), ("<tool>shell</tool><args>rm -rf /</args>", "unknown"),
     ("<tool>calculator</tool><args>2 <eos> 3</args>", "malformed"), ("<tool>calculator</tool><args> </args>", "empty"),
     ("<tool>calculator</tool><args>" + "1+" * 150 + "1</args>", "oversized"),
     ("<tool></tool><args>1</args>", "malformed")],
)  # fmt: skip
def test_malformed_calls_are_rejected_with_a_reason(text: str, error: str) -> None:
    (parsed,) = parse_calls(text)
    assert not parsed.ok and error in (parsed.error or "")
    outcome = execute(parsed)
    assert not outcome.ok and outcome.result_text.startswith("<result>error: ")


def test_refused_arguments_become_an_error_result_not_an_exception() -> None:
    outcome = execute(parse_segment("<tool>calculator</tool><args>1 / 0</args>"))
    assert not outcome.ok and outcome.result_text == "<result>error: division by zero</result>"
    outcome = execute(parse_segment("<tool>convert</tool><args>3 km to kg</args>"))
    assert not outcome.ok and "cannot convert" in outcome.value


def test_every_segment_is_parsed_on_its_own() -> None:
    text = ("<tool>calculator</tool><args>1 + 1</args><result>2</result><tool>convert<args>x</args>"
            "<tool>convert</tool><args>2 km to m</args>")
    parsed = parse_calls(text)
    assert [p.ok for p in parsed] == [True, False, True]
    assert parsed[2].call == ToolCall("convert", "2 km to m")
    assert parse_calls("no calls here") == []


def test_last_call_only_when_the_text_ends_with_a_complete_call() -> None:
    assert last_call("Answer:<tool>calculator</tool><args>4 * 4") is None
    assert last_call("Answer: 16") is None
    parsed = last_call("<tool>calculator</tool><args>1</args> then <tool>calculator</tool><args>4 * 4</args>")
    assert parsed is not None and parsed.call == ToolCall("calculator", "4 * 4")


def test_format_and_answer_helpers() -> None:
    call = ToolCall("convert", "3 km to m")
    assert format_call(call) == "<tool>convert</tool><args>3 km to m</args>"
    text = "Q<tool>convert</tool><args>3 km to m</args><result>3000</result> 3000<eos> junk"
    assert results_in(text) == ["3000"] and final_answer(text) == "3000" and final_answer(" 12<eos>") == "12"
    assert same_answer(" 2000.0", "2000") and not same_answer("abc", "2000") and same_answer("x", " x")
