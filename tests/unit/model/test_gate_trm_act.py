"""MAG gate, TRM recursion drivers and the ACT head."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_builders import build_model, random_ids

from agent_forge.model.act import ACTHead, act_loss, act_targets, halting_probability, halting_steps
from agent_forge.model.gate import MAGGate, bernoulli_entropy
from agent_forge.model.trm import run_all_steps, run_early_exit, run_masked
from support.shapes import unit_config


def test_gate_is_a_convex_blend_starting_at_one_half() -> None:
    gate = MAGGate(unit_config())
    h, a, m = torch.randn(3, 5, 64), torch.randn(3, 5, 64), torch.randn(3, 5, 64)
    g, logits = gate(h)
    torch.testing.assert_close(g, torch.sigmoid(logits))
    out = MAGGate.blend(g, a, m)
    torch.testing.assert_close(out, g * a + (1 - g) * m)
    low, high = torch.minimum(a, m), torch.maximum(a, m)
    assert torch.all(out >= low - 1e-6) and torch.all(out <= high + 1e-6)
    model_gate = build_model().model.layers[0].gate  # as initialised inside the model
    assert torch.all(model_gate.proj.bias == 0)
    g, _ = model_gate(torch.randn(3, 5, 64))
    assert torch.all((g - 0.5).abs() < 0.05)


def test_gate_entropy_formula_and_the_regulariser_pushes_towards_one_half() -> None:
    logits = torch.tensor([-3.0, -0.5, 0.0, 2.0], requires_grad=True)
    g = torch.sigmoid(logits)
    direct = -(g * g.log() + (1 - g) * (1 - g).log()).mean()
    entropy = bernoulli_entropy(logits, g)
    torch.testing.assert_close(entropy, direct)
    assert bernoulli_entropy(torch.zeros(3), torch.full((3,), 0.5)).item() == pytest.approx(math.log(2))
    (-entropy).backward()  # the loss term is -reg * H: descending it raises the entropy
    assert logits.grad[0] < 0 and logits.grad[3] > 0 and logits.grad[2] == 0


def test_halting_picks_the_first_step_over_the_threshold_else_the_last() -> None:
    probs = [torch.tensor([0.9, 0.1, 0.2]), torch.tensor([0.95, 0.7, 0.3]), torch.tensor([0.1, 0.1, 0.1])]
    assert halting_steps(probs, 0.5).tolist() == [0, 1, 2]
    assert halting_steps(probs, 0.92).tolist() == [1, 2, 2]
    torch.testing.assert_close(
        halting_probability(torch.tensor([2.0, -1.0])), torch.sigmoid(torch.tensor([2.0, -1.0]))
    )


def test_act_targets_follow_the_bootstrapped_definition() -> None:
    losses = [
        torch.tensor([0.1, 2.0, 2.0, 3.0]),
        torch.tensor([0.1, 0.5, 2.0, 3.0]),
        torch.tensor([0.1, 0.5, 0.2, 3.0]),
    ]
    teacher = [torch.full((4,), 0.5), torch.tensor([0.2, 0.6, 0.7, 0.1]), torch.full((4,), 0.9)]
    cost = 0.05
    targets = act_targets(losses, teacher, cost)
    future_2 = losses[2]
    torch.testing.assert_close(targets[1], (losses[1] <= future_2 + cost).float())
    future_1 = teacher[1] * losses[1] + (1 - teacher[1]) * future_2
    torch.testing.assert_close(targets[0], (losses[0] <= future_1 + cost).float())
    # no later gain -> halt; a later step lowers the loss -> go on; no step helps -> halt
    torch.testing.assert_close(targets[0], torch.tensor([1.0, 0.0, 0.0, 1.0]))
    torch.testing.assert_close(targets[1], torch.tensor([1.0, 1.0, 0.0, 1.0]))
    assert len(targets) == 2


def test_act_step_cost_trades_small_gains_for_compute() -> None:
    losses = [torch.tensor([1.00, 1.00]), torch.tensor([0.97, 0.50])]
    teacher = [torch.full((2,), 0.5), torch.full((2,), 0.5)]
    assert act_targets(losses, teacher, 0.0)[0].tolist() == [0.0, 0.0]
    assert act_targets(losses, teacher, 0.05)[0].tolist() == [1.0, 0.0]


def test_act_loss_is_the_mean_bce_over_valid_positions_and_all_but_the_last_step() -> None:
    gen = torch.Generator().manual_seed(0)
    q = [torch.randn(4, generator=gen) for _ in range(3)]
    targets = [torch.rand(4, generator=gen) for _ in range(2)]
    valid = torch.tensor([1.0, 1.0, 0.0, 1.0])
    bce = F.binary_cross_entropy_with_logits
    expected = sum((bce(q[t], targets[t], reduction="none") * valid).sum() for t in range(2)) / (3 * 2)
    torch.testing.assert_close(act_loss(q, targets, valid), expected)


def test_teacher_is_an_ema_of_the_head_held_in_buffers() -> None:
    head = ACTHead(unit_config())
    head.copy_to_teacher()
    assert not any("teacher" in name for name, _ in head.named_parameters())
    old = head.teacher_weight.clone()
    with torch.no_grad():
        head.proj.weight.add_(1.0)
    head.update_teacher(0.98)
    torch.testing.assert_close(head.teacher_weight, 0.98 * old + 0.02 * head.proj.weight)
    z = torch.randn(3, 64, requires_grad=True)
    assert not head.teacher(z).requires_grad


@pytest.mark.parametrize("threshold", [0.05, 0.5, 0.95])
def test_early_exit_equals_the_masked_export_path(threshold: float) -> None:
    model = build_model(seed=1).eval()
    x = torch.randn(3, 11, 64)
    with torch.no_grad():
        torch.nn.init.normal_(model.act_head.proj.weight, std=0.5)  # spread halting over the steps
        args = (model.trm, model.act_head, x, 3, threshold, model.norm_out, model.lm_head)
        masked, early = run_masked(*args), run_early_exit(*args)
    assert torch.equal(masked.halt_step, early.halt_step)
    torch.testing.assert_close(early.logits, masked.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(early.hidden, masked.hidden, atol=1e-5, rtol=1e-5)
    if threshold == 0.5:
        assert len(set(masked.halt_step.flatten().tolist())) > 1


def test_early_exit_stops_as_soon_as_every_position_has_halted() -> None:
    model = build_model(seed=2).eval()
    with torch.no_grad():
        model.act_head.proj.bias.fill_(20.0)  # always halt at step 0
    calls = []
    model.trm.update.register_forward_hook(lambda *args: calls.append(1))
    with torch.no_grad():
        out = model(random_ids(2, 9))
    assert len(calls) == 1 and torch.all(out.halt_steps == 0)
    assert out.mean_halt_step.item() == 1.0


def test_answer_and_latent_are_detached_between_steps_but_features_are_not() -> None:
    model = build_model(seed=3).train()
    x = torch.randn(2, 7, 64, requires_grad=True)
    steps = run_all_steps(model.trm, model.act_head, x, 3, model.norm_out)
    probe = torch.randn(2, 7, 64)
    first = torch.autograd.grad((steps.hidden[0] * probe).sum(), x, retain_graph=True)[0]
    later, grad_z0 = torch.autograd.grad(
        (steps.hidden[2] * probe).sum(), (x, model.trm.z_init), allow_unused=True
    )
    assert grad_z0 is None or torch.all(grad_z0 == 0), "z0 only reaches step 2 through a detached z"
    # y re-enters each step as x + (y - x).detach(): the last step's loss reaches the features through the
    # identity path as fully as the first step's (detaching all of y would leave about 1% of it)
    assert later.norm() > 0.5 * first.norm()
    with torch.no_grad():
        plain = run_all_steps(model.trm, model.act_head, x, 3, model.norm_out)
    for got, want in zip(steps.hidden, plain.hidden, strict=True):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)


def test_act_training_halts_early_where_steps_gain_nothing_and_late_where_they_do() -> None:
    """Three kinds of position: low loss from step 0, loss lowered by step 1, loss high at every step.
    Trained on these losses with its EMA teacher, the head halts the first kind at step 0, the second at
    step 1 and the third at step 0: halting follows what recursion gains, neither always 0 nor always
    T_max."""
    torch.manual_seed(0)
    head = ACTHead(unit_config())
    head.copy_to_teacher()
    kinds = torch.arange(3).repeat(20)
    kind_vec, step_vec = torch.randn(3, 64), torch.randn(3, 64)
    latents = [kind_vec[kinds] + step_vec[t] + 0.1 * torch.randn(60, 64) for t in range(3)]
    high, low = torch.full((60,), 3.0), torch.full((60,), 0.2)
    losses = [torch.where(kinds == 0, low, high), torch.where(kinds <= 1, low, high)]
    losses.append(losses[1].clone())
    optimizer = torch.optim.Adam(head.parameters(), lr=0.02)
    valid = torch.ones(60)
    for _ in range(200):
        head.update_teacher(0.98)
        targets = act_targets(losses, [halting_probability(head.teacher(z)) for z in latents], 0.02)
        loss = act_loss([head(z) for z in latents], targets, valid)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        halt = halting_steps([halting_probability(head(z)) for z in latents], 0.5)
    assert torch.all(halt[kinds == 0] == 0)
    assert torch.all(halt[kinds == 1] == 1)
    assert torch.all(halt[kinds == 2] == 0)
