"""Bake data and the D10 guard: the baking loss is zero without a prompt, positive with one, and falls."""

from __future__ import annotations

import copy
import dataclasses

import torch

from agent_forge.baking import (
    LoRAConfig,
    References,
    apply_lora,
    batch_kl,
    make_batch,
    mean_kl,
    merge_lora,
    per_token_kl,
    prepare_bake,
    schedule_indices,
    use_references,
)
from agent_forge.baking.data import gather_positions, hard_targets
from agent_forge.data.tokenizer import BOS_ID
from agent_forge.model import ForgeForCausalLM
from agent_forge.optim import MuGrokConfig, build_optimizer
from support.shapes import unit_config

PROMPT = [40, 41, 42, 43, 44, 45, 46, 47]


def peaked_model(seed: int) -> ForgeForCausalLM:
    """A smoke model with a larger initialisation, so its next-token distributions are far from uniform."""
    torch.manual_seed(seed)
    return ForgeForCausalLM(unit_config(initializer_range=0.2)).eval()


def queries(n: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randint(30, 500, (int(3 + i % 4),), generator=generator).tolist() for i in range(n)]


def test_right_padding_changes_no_scored_position() -> None:
    model = peaked_model(0)
    bake = prepare_bake(model, PROMPT, queries(4, 1), queries(2, 2), 1, 6, seed=3, batch_size=4)
    batch = make_batch(bake.train, bake.train_lp, [0, 1, 2, 3])
    with torch.no_grad():
        together = gather_positions(model(input_ids=batch["input_ids"]).logits, batch["index"])
        for row in range(4):
            ids = [BOS_ID, *bake.train.queries[row], *bake.train.continuations[row]]
            alone = model(input_ids=torch.tensor([ids])).logits
            mask = batch["mask"][row]
            picked = gather_positions(alone, batch["index"][row : row + 1])[0]
            torch.testing.assert_close(together[row][mask], picked[mask], atol=1e-5, rtol=1e-5)


def test_the_loss_is_zero_without_a_prompt_and_positive_with_one() -> None:
    model = peaked_model(4)
    same = prepare_bake(model, [], queries(6, 5), queries(3, 6), 1, 6, seed=7, batch_size=3)
    assert mean_kl(model, same.train, same.train_lp, 3) < 1e-6  # teacher and student read the same text
    prompted = prepare_bake(model, PROMPT, queries(6, 5), queries(3, 6), 1, 6, seed=7, batch_size=3)
    assert mean_kl(model, prompted.train, prompted.train_lp, 3) > 1e-3


def test_anchored_rows_are_read_by_the_teacher_without_the_prompt() -> None:
    model, train, held = peaked_model(17), queries(6, 18), queries(4, 19)
    anchors = {tuple(q) for q in [*train[::2], *held[::2]]}
    bake = prepare_bake(model, PROMPT, train, held, 1, 6, seed=20, batch_size=3,
                        anchored=lambda q: tuple(q) in anchors)
    assert bake.train.anchored == [True, False] * 3 and bake.heldout.anchored == [True, False] * 2
    anchored_rows = [i for i, flag in enumerate(bake.train.anchored) if flag]
    kl = [mean_kl(model, dataclasses.replace(bake.train, queries=[bake.train.queries[i]],
                                             continuations=[bake.train.continuations[i]],
                                             sampled=[bake.train.sampled[i]], anchored=[bake.train.anchored[i]]),
                  bake.train_lp[i : i + 1, : len(bake.train.continuations[i])], 1) for i in range(6)]
    assert all(kl[i] < 1e-6 for i in anchored_rows)  # the student reads what the teacher read: nothing to learn
    assert all(kl[i] > 1e-3 for i in range(6) if i not in anchored_rows)
    rows, starts = bake.train.rows([0, 1], prompted=True)
    assert rows[0][1 : 1 + len(PROMPT)] != PROMPT and rows[1][1 : 1 + len(PROMPT)] == PROMPT
    assert starts == [len(bake.train.queries[0]), len(PROMPT) + len(bake.train.queries[1])]


def test_schedule_visits_every_row_once_per_epoch_reproducibly() -> None:
    batches = [schedule_indices(10, p, 5, seed=1) for p in range(4)]
    assert sorted(batches[0] + batches[1]) == list(range(10)) == sorted(batches[2] + batches[3])
    assert batches[0] != batches[2]  # a fresh permutation each epoch
    assert schedule_indices(10, 3, 5, seed=1) == batches[3]


def bake_steps(model: ForgeForCausalLM, bake, steps: int, lr_scale: float) -> None:
    base = MuGrokConfig.from_phase("6")
    config = dataclasses.replace(base, muon_lr=base.muon_lr * lr_scale, fallback_lr=base.fallback_lr * lr_scale,
                                 ns_dtype="float32")
    optimizer = build_optimizer(model, config, qk_clip_modules=[])
    model.train()
    for position in range(steps):
        batch_kl(model, bake.batch(position, 8)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()


def test_baking_lowers_the_kl_on_training_and_heldout_continuations() -> None:
    teacher = peaked_model(8)
    bake = prepare_bake(teacher, PROMPT, queries(8, 9), queries(8, 10), 2, 8, seed=11, batch_size=8)
    student = copy.deepcopy(teacher)
    train_before = mean_kl(student, bake.train, bake.train_lp, 8)
    held_before = mean_kl(student, bake.heldout, bake.heldout_lp, 8)
    bake_steps(student, bake, 12, lr_scale=20.0)
    assert train_before > 1e-3
    assert mean_kl(student, bake.train, bake.train_lp, 8) < 0.7 * train_before
    assert mean_kl(student, bake.heldout, bake.heldout_lp, 8) < held_before


def test_a_low_rank_bake_lowers_the_kl_and_survives_the_merge() -> None:
    teacher = peaked_model(12)
    bake = prepare_bake(teacher, PROMPT, queries(8, 13), queries(4, 14), 2, 8, seed=15, batch_size=8)
    student = copy.deepcopy(teacher)
    before = mean_kl(student, bake.train, bake.train_lp, 8)
    handle = apply_lora(student, LoRAConfig(rank=4), torch.Generator().manual_seed(16))
    bake_steps(student, bake, 12, lr_scale=100.0)
    adapted = mean_kl(student, bake.train, bake.train_lp, 8)
    merge_lora(student, handle)
    merged = mean_kl(student, bake.train, bake.train_lp, 8)
    assert adapted < 0.9 * before
    assert abs(merged - adapted) < 1e-4 * max(1.0, adapted)


def test_reference_rows_continue_with_the_reference_after_the_first_thought_opening() -> None:
    """D18: the teacher's tokens up to its first ``open_id`` stay; the reference follows, the written pieces as
    hard targets, the inserted ones read only; held-out rows and rows with no reference keep the teacher's."""
    model, train, held = peaked_model(21), queries(4, 22), queries(2, 23)
    bake = prepare_bake(model, PROMPT, train, held, 1, 6, seed=24, batch_size=4)
    open_id = bake.train.continuations[0][2]  # a token the teacher wrote: the rewrite starts after it
    pieces = [([300, 301], True), ([302], False), ([303, 304], True)]
    chosen = {tuple(train[0]), *map(tuple, held)}
    rewritten = prepare_bake(model, PROMPT, train, held, 1, 6, seed=24, batch_size=4,
                             references=References(lambda q: pieces if tuple(q) in chosen else None, open_id))
    original, cut = bake.train.continuations[0], bake.train.continuations[0].index(open_id) + 1
    assert rewritten.references == 1
    assert rewritten.train.continuations[0] == [*original[:cut], 300, 301, 302, 303, 304]
    assert rewritten.train.sampled[0] == [*bake.train.sampled[0][:cut], True, True, False, True, True]
    assert rewritten.train.hard[0] == [False] * cut + [True, True, False, True, True]
    assert rewritten.train.continuations[1:] == bake.train.continuations[1:]
    assert not any(map(any, rewritten.train.hard[1:]))
    assert rewritten.heldout.continuations == bake.heldout.continuations  # held-out KL stays the teacher's
    assert rewritten.train_lp.shape[1] == rewritten.train.width  # the teacher scores the rewritten rows


def test_a_hard_target_is_scored_by_cross_entropy_on_the_reference_token() -> None:
    model, train = peaked_model(25), queries(3, 26)
    open_id = 7
    bake = prepare_bake(model, PROMPT, train, queries(1, 28), 1, 6, seed=27, batch_size=3)
    bake.train.continuations[0][1] = open_id  # make sure row 0 opens a thought at position 1
    assert use_references(bake.train, [[([310, 311], True)], None, None], open_id) == 1
    batch = make_batch(bake.train, hard_targets(bake.train_lp, bake.train), [0])
    with torch.no_grad():
        student = gather_positions(model(input_ids=batch["input_ids"]).logits, batch["index"])[0]
    length = len(bake.train.continuations[0])  # the row is shorter than the batch's width now
    hard = torch.tensor(bake.train.hard[0])
    log_probs = torch.log_softmax(student[:length].float(), dim=-1)
    targets = torch.tensor(bake.train.continuations[0])
    cross_entropy = -log_probs[torch.arange(length), targets]
    kl = per_token_kl(batch["teacher"][0][:length], student[:length])
    torch.testing.assert_close(kl[hard], cross_entropy[hard], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(batch["teacher"][0][:length][~hard], bake.train_lp[0][:length][~hard])
    assert torch.isfinite(kl).all()
