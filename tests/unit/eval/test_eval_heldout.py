"""Held-out evaluation on tiny real models: structure, loss against independent computations, D10 guards."""

from __future__ import annotations

import math

import pytest
import torch
from eval_tiny_models import BigramLM, tiny_llama, train_steps

from agent_forge.data.tasks import make_example, training_text
from agent_forge.data.tokenizer import EOS_ID
from agent_forge.eval import HeldoutSet, answers_correct, evaluate, evaluate_accuracy_by_generation
from agent_forge.eval.heldout import greedy_writes
from agent_forge.eval.metrics import IGNORE_INDEX


def test_accuracy_targets_are_exactly_answer_then_eos(task_data):
    tokenizer = task_data.tokenizer
    heldout = HeldoutSet.build(tokenizer, task_data.heldout, seq_len=64)
    assert heldout.n_examples == len(task_data.heldout)
    rows = [row for _, _, targets in heldout.qa_batches(7) for row in targets.tolist()]
    for row, index in zip(rows, heldout.qa_order, strict=True):
        example = heldout.examples[index]
        scored = [t for t in row if t != IGNORE_INDEX]
        assert scored == [*tokenizer.encode(example.answer), EOS_ID]
        assert row.index(scored[0]) == heldout.qa_answer_start[index] - 1  # predicted from the prompt's end


def test_text_examples_feed_the_loss_but_not_the_accuracy(task_data):
    text = make_example("text", 1, "A paragraph of plain notes, used only for the loss. " * 3, "", {})
    examples = [*task_data.heldout[:5], text]
    heldout = HeldoutSet.build(task_data.tokenizer, examples, seq_len=32)
    assert heldout.n_examples == 5 and "text" not in heldout.kinds
    streamed = sum(len(task_data.tokenizer.encode(training_text(e), bos=True)) for e in examples)
    assert sum(len(row) for row in heldout.lm_rows) == streamed
    capped = HeldoutSet.build(task_data.tokenizer, examples, seq_len=32, max_lm_sequences=2)
    assert len(capped.lm_rows) == 2


def test_long_prompts_are_cut_from_the_left_keeping_the_answer(task_data):
    long = make_example("arith", 1, "Tom has many apples. " * 30 + "Answer:", " 7", {})
    heldout = HeldoutSet.build(task_data.tokenizer, [long], seq_len=24)
    tokens, answer = heldout.qa_tokens[0], [*task_data.tokenizer.encode(" 7"), EOS_ID]
    assert len(tokens) == 24 and tokens[-len(answer) :] == answer
    assert heldout.qa_answer_start[0] == 24 - len(answer)


def test_loss_matches_the_models_own_loss(task_data):
    model = tiny_llama(task_data.tokenizer.vocab_size, seed=3)
    seq_len = 48
    probe = HeldoutSet.build(task_data.tokenizer, task_data.heldout, seq_len)
    full_rows = [row for row in probe.lm_rows if len(row) == seq_len]
    heldout = HeldoutSet.build(task_data.tokenizer, task_data.heldout, seq_len, len(full_rows))
    result = evaluate(model, heldout, batch_size=5)
    rows = torch.tensor(full_rows)
    with torch.no_grad():
        reference = model(input_ids=rows, labels=rows).loss.item()  # HF shifts the labels itself
    assert result.n_tokens == rows.numel() - len(rows)
    assert math.isclose(result.loss, reference, rel_tol=1e-4)
    assert math.isclose(result.perplexity, math.exp(reference), rel_tol=1e-3)


def test_bigram_model_loss_and_bits_per_byte_by_hand(task_data):
    tokenizer = task_data.tokenizer
    model = BigramLM(tokenizer.vocab_size)
    heldout = HeldoutSet.build(tokenizer, task_data.heldout[:12], seq_len=40)  # last row is padded
    result = evaluate(model, heldout, batch_size=4)
    nats, n_bytes, n_tokens = 0.0, 0, 0
    with torch.no_grad():
        for row in heldout.lm_rows:
            log_probs = model.table.weight[torch.tensor(row[:-1])].log_softmax(-1)
            nats -= log_probs[torch.arange(len(row) - 1), torch.tensor(row[1:])].sum().item()
            n_bytes += len(tokenizer.decode(row[1:], skip_special=True).encode("utf-8"))
            n_tokens += len(row) - 1
    assert result.n_tokens == n_tokens and heldout.lm_bytes == n_bytes
    assert math.isclose(result.loss, nats / n_tokens, rel_tol=1e-5)
    assert math.isclose(result.bits_per_byte, nats / math.log(2) / n_bytes, rel_tol=1e-5)


def test_teacher_forced_accuracy_equals_greedy_decoding(task_data, trained_model):
    heldout = HeldoutSet.build(task_data.tokenizer, task_data.heldout, seq_len=64)
    teacher_forced = answers_correct(trained_model, heldout, batch_size=16)
    decoded = evaluate_accuracy_by_generation(trained_model, task_data.tokenizer, heldout.examples, 8)
    assert 0 < sum(teacher_forced) < len(teacher_forced)  # a mix, so the comparison means something
    assert teacher_forced == decoded.exact
    result = evaluate(trained_model, heldout)
    assert math.isclose(result.accuracy, sum(teacher_forced) / len(teacher_forced))
    assert set(result.accuracy_by_kind) == {"arith", "mc"} and set(result.accuracy_by_level) == {1}


def test_results_do_not_depend_on_batch_size_and_restore_training_mode(task_data, trained_model):
    heldout = HeldoutSet.build(task_data.tokenizer, task_data.heldout, seq_len=64)
    trained_model.zero_grad(set_to_none=True)
    trained_model.train()
    small = evaluate(trained_model, heldout, batch_size=3)
    large = evaluate(trained_model, heldout, batch_size=64)
    assert trained_model.training
    trained_model.eval()
    assert math.isclose(small.loss, large.loss, rel_tol=1e-5) and small.accuracy == large.accuracy
    assert all(p.grad is None for p in trained_model.parameters())


def test_heldout_loss_changes_and_falls_as_the_model_trains(task_data):
    """D10: a validation loss that stays constant would mean evaluation is not looking at the model."""
    model = tiny_llama(task_data.tokenizer.vocab_size, seed=5)
    heldout = HeldoutSet.build(task_data.tokenizer, task_data.heldout, seq_len=64)
    losses = [evaluate(model, heldout).loss]
    for _ in range(2):
        train_steps(model, task_data.dataset, steps=5)
        losses.append(evaluate(model, heldout).loss)
    assert len(set(losses)) == 3, losses
    assert losses[2] < losses[1] < losses[0], losses



@pytest.mark.parametrize("batch_size", [1, 8])
def test_evaluate_accepts_a_plain_torch_module(task_data, batch_size):
    heldout = HeldoutSet.build(task_data.tokenizer, task_data.heldout[:6], seq_len=32)
    result = evaluate(BigramLM(task_data.tokenizer.vocab_size), heldout, batch_size=batch_size)
    assert result.n_examples == 6 and math.isfinite(result.loss) and 0.0 <= result.accuracy <= 1.0


def _greedy(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    """``n`` greedy tokens after ``prompt``, one full forward pass a token (the plain way, no cache)."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            ids.append(int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt):]


def test_greedy_writes_agrees_with_greedy_decoding_and_reads_inserted_tokens_as_given():
    model = tiny_llama(50, seed=3).eval()
    prompts = [[1, 7, 8, 9], [1, 20, 21], [1, 30, 31, 32, 33, 34]]
    rows = [[*p, *_greedy(model, p, 5)] for p in prompts]
    written = [[False] * len(p) + [True] * 5 for p in prompts]
    assert greedy_writes(model, rows, written, batch_size=2) == [True, True, True]
    wrong = [list(row) for row in rows]
    wrong[1][-1] = (wrong[1][-1] + 1) % 50  # greedy would not write this token
    assert greedy_writes(model, wrong, written) == [True, False, True]
    inserted = [list(flags) for flags in written]
    inserted[1][-1] = False  # the same token, inserted (a tool's result): read, not checked
    assert greedy_writes(model, wrong, inserted) == [True, True, True]
    assert greedy_writes(model, [rows[0]], [[False] * len(rows[0])]) == [False]  # nothing written: no match
