"""Composite fitness (Phase 2): measured, deterministic, and lower for a worse model (D10)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from eval_tiny_models import BigramLM, train_steps

from agent_forge.eval import HeldoutSet, evaluate
from agent_forge.eval.fitness import (
    CompositeWeights,
    FitnessMeasurement,
    composite_fitness,
    evaluate_fitness,
    heldout_subset,
    measure,
    state_bytes,
)
from agent_forge.model import ForgeForCausalLM
from support.shapes import unit_config


@pytest.fixture(scope="module")
def heldout(task_data) -> HeldoutSet:
    return HeldoutSet.build(task_data.tokenizer, task_data.heldout, seq_len=64)


@pytest.fixture(scope="module")
def forge_model(task_data) -> ForgeForCausalLM:
    """A smoke-shaped TRM model trained briefly, so that damaging its weights has something to damage."""
    torch.manual_seed(0)
    model = ForgeForCausalLM(unit_config(vocab_size=task_data.tokenizer.vocab_size))
    train_steps(model, task_data.dataset, steps=15)
    return model


def _measurement(**values: float) -> FitnessMeasurement:
    base = {"loss": math.log(20.0), "perplexity": 20.0, "accuracy": 0.25, "n_examples": 40, "mean_steps": 2.0,
            "memory_bytes": 1000}
    return FitnessMeasurement(**{**base, **values})


def test_same_model_same_fitness_twice(forge_model, heldout):
    first, second = measure(forge_model, heldout), measure(forge_model, heldout)
    assert first == second  # every quantity counted, none timed
    reference = FitnessMeasurement.mean([first])
    assert evaluate_fitness(forge_model, heldout, reference).value == composite_fitness(second, reference).value


def test_noisy_weights_score_lower(forge_model, heldout):
    reference = measure(forge_model, heldout)
    damaged = copy.deepcopy(forge_model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in damaged.parameters():
            if param.dim() > 1:
                param.add_(torch.randn(param.shape, generator=generator) * param.std() * 0.5)
    clean = composite_fitness(reference, reference)
    worse = evaluate_fitness(damaged, heldout, reference)
    assert worse.measurement.perplexity > reference.perplexity
    assert worse.components["perplexity"] < 1.0
    assert worse.value < clean.value


def test_fitness_matches_the_heldout_evaluation(forge_model, heldout):
    measured = measure(forge_model, heldout)
    result = evaluate(forge_model, heldout)
    assert measured.perplexity == result.perplexity and measured.accuracy == result.accuracy
    assert measured.n_examples == heldout.n_examples
    assert 1.0 <= measured.mean_steps <= forge_model.config.trm_t_max
    assert measured.memory_bytes == state_bytes(forge_model)


def test_the_reference_itself_scores_one_per_component():
    reference = _measurement()
    fitness = composite_fitness(reference, reference)
    assert fitness.components == {"perplexity": 1.0, "accuracy": 1.0, "speed": 1.0, "memory": 1.0}
    assert fitness.value == pytest.approx(1.0)  # the spec's weights add up to 1


def test_each_component_rewards_the_better_direction():
    reference = _measurement()
    better = {"perplexity": _measurement(perplexity=10.0), "accuracy": _measurement(accuracy=0.5),
              "speed": _measurement(mean_steps=1.0), "memory": _measurement(memory_bytes=500)}
    for name, measurement in better.items():
        fitness = composite_fitness(measurement, reference)
        assert fitness.components[name] > 1.0, name
        others = [v for k, v in fitness.components.items() if k != name]
        assert others == [1.0, 1.0, 1.0]
    assert composite_fitness(_measurement(perplexity=40.0), reference).components["perplexity"] == 0.5
    assert composite_fitness(_measurement(mean_steps=4.0), reference).components["speed"] == 0.5


def test_broken_model_and_zero_reference_accuracy_stay_finite():
    reference = _measurement(accuracy=0.0)
    broken = composite_fitness(_measurement(perplexity=math.inf, accuracy=math.nan), reference)
    assert broken.components["perplexity"] == 0.0 and broken.components["accuracy"] == 1.0
    one_right = composite_fitness(_measurement(accuracy=1 / 40), reference)
    assert one_right.components["accuracy"] == pytest.approx(2.0)  # (1/40 + 1/40) / (0 + 1/40)
    assert math.isfinite(broken.value)


def test_weights_are_applied_and_checked():
    reference = _measurement()
    only_ppl = CompositeWeights(perplexity=1.0, accuracy=0.0, speed=0.0, memory=0.0)
    assert composite_fitness(_measurement(perplexity=10.0), reference, only_ppl).value == 2.0
    with pytest.raises(ValueError):
        CompositeWeights(perplexity=-1.0)


def test_mean_steps_follows_the_halting_threshold(forge_model, heldout):
    """Speed is measured from halting: a model that halts at once uses 1 step, one that never halts T_max."""
    early, late = copy.deepcopy(forge_model), copy.deepcopy(forge_model)
    early.set_non_shape(act_threshold=1e-6)
    late.set_non_shape(act_threshold=1.0 - 1e-9)
    fast, slow = measure(early, heldout), measure(late, heldout)
    assert fast.mean_steps == 1.0
    assert slow.mean_steps > fast.mean_steps
    assert composite_fitness(fast, slow).components["speed"] == slow.mean_steps


def test_a_model_without_recursion_counts_one_step(task_data, heldout):
    bigram = BigramLM(task_data.tokenizer.vocab_size)
    measured = measure(bigram, heldout)
    assert measured.mean_steps == 1.0
    assert measured.memory_bytes == bigram.table.weight.numel() * 4


def test_state_bytes_counts_tied_weights_once(forge_model):
    assert forge_model.lm_head.weight is forge_model.get_input_embeddings().weight
    params = sum(p.numel() for p in forge_model.parameters())
    buffers = sum(b.numel() for b in forge_model.buffers())
    assert state_bytes(forge_model) == (params + buffers) * 4


def test_heldout_subset_takes_a_fixed_prefix(heldout):
    subset = heldout_subset(heldout, lm_sequences=2, examples=5)
    assert subset.lm_rows == heldout.lm_rows[:2]
    assert subset.qa_tokens == heldout.qa_tokens[:5] and subset.examples == heldout.examples[:5]
    assert 0 < subset.lm_bytes < heldout.lm_bytes
    whole = heldout_subset(heldout)
    assert whole.lm_rows == heldout.lm_rows and whole.n_examples == heldout.n_examples


def test_measure_needs_tasks_and_rows(task_data, forge_model):
    text_only = HeldoutSet.build(task_data.tokenizer, [], seq_len=64)
    with pytest.raises(ValueError):
        measure(forge_model, text_only)


def test_answer_only_logits_give_the_full_pass_accuracy_and_halting(forge_model, heldout):
    """logits_mask runs recursion and head on the answer positions only; they equal the full pass there."""
    ids, mask, targets = heldout.qa_batches(8)[0]
    scored = targets != -100
    forge_model.eval()
    with torch.inference_mode():
        full = forge_model(input_ids=ids, attention_mask=mask)
        selected = forge_model(input_ids=ids, attention_mask=mask, logits_mask=scored)
    torch.testing.assert_close(selected.logits, full.logits[scored], atol=1e-5, rtol=1e-5)
    assert torch.equal(selected.halt_steps, full.halt_steps[scored])
    plain = copy.deepcopy(forge_model)
    plain.forward = lambda input_ids, attention_mask=None, **kw: ForgeForCausalLM.forward(  # no logits_mask
        forge_model, input_ids=input_ids, attention_mask=attention_mask)
    assert evaluate(plain, heldout).accuracy == evaluate(forge_model, heldout).accuracy
    steps = positions = 0
    with torch.inference_mode():  # speed counts every real LM token and every answer position
        for ids, mask, _ in heldout.lm_batches(32):
            steps += int(((forge_model(input_ids=ids, attention_mask=mask).halt_steps + 1) * mask).sum())
            positions += int(mask.sum())
        for ids, mask, targets in heldout.qa_batches(32):
            steps += int((forge_model(input_ids=ids, attention_mask=mask).halt_steps[targets != -100] + 1).sum())
            positions += int((targets != -100).sum())
    assert measure(forge_model, heldout).mean_steps == pytest.approx(steps / positions)
