"""Greedy decoding against transformers' own ``generate``, and scoring of generated answers."""

from __future__ import annotations

import torch

from agent_forge.data.sandbox import check_code_answers
from agent_forge.data.tasks import generate_tasks
from agent_forge.data.tokenizer import EOS_ID, PAD_ID
from agent_forge.eval import evaluate_accuracy_by_generation, greedy_decode


def test_greedy_decode_matches_hf_generate(task_data, trained_model):
    hf_tokenizer = task_data.tokenizer.to_hf()
    prompts = [e.prompt for e in task_data.heldout[:12]]
    ours = greedy_decode(trained_model, task_data.tokenizer.encode_batch(prompts, bos=True), max_new_tokens=6)
    for prompt, tokens in zip(prompts, ours, strict=True):
        inputs = hf_tokenizer(prompt, return_tensors="pt")
        with torch.no_grad():
            output = trained_model.generate(
                **inputs, max_new_tokens=6, do_sample=False, eos_token_id=EOS_ID, pad_token_id=PAD_ID
            )
        theirs = output[0, inputs["input_ids"].shape[1] :].tolist()
        theirs = theirs[: theirs.index(EOS_ID) + 1] if EOS_ID in theirs else theirs
        assert tokens == theirs


def test_generation_scores_exact_answers_and_runs_code_tests(task_data, trained_model):
    examples = [*task_data.heldout[:10], *generate_tasks("code", 1, 4, seed=0, split="heldout")]
    result = evaluate_accuracy_by_generation(trained_model, task_data.tokenizer, examples, max_new_tokens=6)
    assert len(result.completions) == len(examples) == len(result.correct)
    passed = check_code_answers(examples, result.completions)
    for example, completion, exact, correct, ran in zip(
        examples, result.completions, result.exact, result.correct, passed, strict=True
    ):
        if exact:
            assert completion == example.answer
        assert correct == (exact or ran)
        if example.kind != "code":
            assert correct == exact
    assert set(result.accuracy_by_kind) == {"arith", "mc", "code"}
    assert result.accuracy == sum(result.correct) / len(examples)
    assert 0 < result.exact_accuracy < 1


def test_a_context_window_limit_is_respected(task_data, trained_model):
    prompts = task_data.tokenizer.encode_batch([e.prompt for e in task_data.heldout[:3]], bos=True)
    outputs = greedy_decode(trained_model, prompts, max_new_tokens=4, max_len=8)
    assert all(1 <= len(tokens) <= 4 for tokens in outputs)
