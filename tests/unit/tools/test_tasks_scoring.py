"""Tool-use tasks (verifiable, split by hash) and the scoring of generations."""

from __future__ import annotations

import pytest
import torch

from agent_forge.data.tasks import split_of
from agent_forge.data.tokenizer import BOS_ID, train_tokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.tools import (
    calculate,
    convert,
    evaluate_tool_use_variants,
    execute,
    tool_solution,
    tool_tasks,
)
from agent_forge.tools.calls import parse_calls
from agent_forge.tools.runtime import ToolGeneration
from agent_forge.tools.scoring import call_likelihood, same_answer, score_generation
from support.shapes import unit_config


def test_tool_tasks_are_reproducible_split_by_hash_and_verifiable() -> None:
    train, held = tool_tasks(40, seed=3, split="train"), tool_tasks(20, seed=3, split="heldout")
    assert train == tool_tasks(40, seed=3, split="train")
    assert not {e.uid for e in train} & {e.uid for e in held}
    assert all(split_of(e.uid) == "train" for e in train) and all(split_of(e.uid) == "heldout" for e in held)
    assert {e.meta["tool"] for e in held} == {"calculator", "convert"}
    for example in train + held:
        run = calculate if example.meta["tool"] == "calculator" else convert
        assert example.answer == " " + run(example.meta["args"]) == " " + example.meta["result"]
        (parsed,) = parse_calls(tool_solution(example))
        assert execute(parsed).value == example.meta["result"]
        assert example.prompt.endswith("Answer:")


def generation(text: str, outcomes: list) -> ToolGeneration:
    from agent_forge.tools.calls import final_answer

    return ToolGeneration(text, [], outcomes, final_answer(text), True)


def test_scoring_counts_format_result_and_answer_separately() -> None:
    (example,) = [e for e in tool_tasks(10, seed=0, split="heldout") if e.meta["tool"] == "calculator"][:1]
    good = tool_solution(example)
    outcome = execute(parse_calls(good)[0])
    assert score_generation(generation(good, [outcome]), example) == (True, True, True, True)
    wrong = good.replace(example.answer + "<eos>", " 1<eos>")
    assert score_generation(generation(wrong, [outcome]), example) == (True, True, True, False)
    bad_call = "<tool>calculator<args>1</args>" + example.answer  # no result: the whole text is the answer
    assert score_generation(generation(bad_call, []), example) == (False, True, False, False)
    assert score_generation(generation(example.answer + "<eos>", []), example) == (False, False, False, True)
    assert same_answer(" 2000.0", "2000") and not same_answer("abc", "2000")


def test_teacher_forced_call_likelihood_matches_a_direct_computation() -> None:
    tokenizer = train_tokenizer(["What is 12 * 7? Answer: 84", "Convert 3 km to m. Answer: 3000"] * 20, 300)
    torch.manual_seed(0)
    model = ForgeForCausalLM(unit_config(vocab_size=tokenizer.vocab_size)).eval()
    examples = tool_tasks(3, seed=1, split="heldout")
    prefix = tokenizer.encode("Tools: calculator.<eos>")
    logprob, p_tool = call_likelihood(model, tokenizer, examples, prefix)
    direct_lp, direct_p = [], []
    for example in examples:
        query = tokenizer.encode(example.prompt)
        call = tokenizer.encode(f"<tool>{example.meta['tool']}</tool><args>{example.meta['args']}</args>")
        ids = torch.tensor([[BOS_ID, *prefix, *query, *call]])
        with torch.no_grad():
            lp = torch.log_softmax(model(input_ids=ids).logits[0], -1)
        start = 1 + len(prefix) + len(query) - 1
        direct_lp.append(float(torch.stack([lp[start + i, t] for i, t in enumerate(call)]).mean()))
        direct_p.append(float(lp[start, call[0]].exp()))
    assert logprob == pytest.approx(sum(direct_lp) / 3, abs=1e-4)
    assert p_tool == pytest.approx(sum(direct_p) / 3, rel=1e-3)
    reports = evaluate_tool_use_variants(model, tokenizer, examples, {"with": prefix, "without": []}, 6, 1)
    assert set(reports) == {"with", "without"} and reports["with"].n == 3
    assert reports["with"].call_logprob == pytest.approx(logprob)
