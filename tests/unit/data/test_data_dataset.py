"""Packed token batches: exact packing, deterministic order, resumable position, rank shards."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DistributedSampler

from agent_forge.data.dataset import (
    IGNORE_LABEL,
    BatchStream,
    PackedDataset,
    answer_labels,
    encode_examples,
    fit_rows,
    pack_tokens,
)
from agent_forge.data.tasks import mix_tasks, training_text
from agent_forge.data.tokenizer import BOS_ID, EOS_ID, PAD_ID, train_tokenizer


@pytest.fixture(scope="module")
def examples():
    return mix_tasks(600, seed=1)


@pytest.fixture(scope="module")
def tokenizer(examples):
    return train_tokenizer([training_text(e) for e in examples], vocab_size=600)


@pytest.fixture(scope="module")
def dataset(tokenizer, examples) -> PackedDataset:
    return PackedDataset.from_examples(tokenizer, examples, seq_len=64, batch_size=4, seed=3)


def test_each_example_is_bos_prompt_answer_eos(tokenizer, examples):
    encoded = encode_examples(tokenizer, examples[:20])
    for example, ids in zip(examples[:20], encoded, strict=True):
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID
        assert tokenizer.decode(ids[1:-1]) == example.prompt + example.answer
        assert ids[1:-1] == tokenizer.encode(example.prompt) + tokenizer.encode(example.answer)


def test_packing_keeps_the_stream_and_drops_only_the_tail():
    lists = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2]]
    rows = pack_tokens(lists, seq_len=5)
    assert rows.dtype == torch.long and rows.tolist() == [[1, 5, 6, 2, 1], [7, 2, 1, 8, 9]]


def test_fit_rows_keeps_whole_examples_and_pads_unscored():
    lists = [[1, 5, 6, 2], [1, 7, 2], [1, 8, 9, 10, 2], [1, 3]]
    labels = [[-100, 5, 6, 2], [1, 7, 2], [-100, -100, 9, 10, 2], [1, 3]]
    rows, row_labels = fit_rows(lists, labels, seq_len=6)
    # [1 7 2] does not fit after [1 5 6 2] (4 + 3 > 6); [1 3] fills the first row exactly
    assert rows.tolist() == [[1, 5, 6, 2, 1, 3], [1, 7, 2, PAD_ID, PAD_ID, PAD_ID], [1, 8, 9, 10, 2, PAD_ID]]
    assert row_labels.tolist() == [[-100, 5, 6, 2, 1, 3], [1, 7, 2, IGNORE_LABEL, IGNORE_LABEL, IGNORE_LABEL],
                                   [-100, -100, 9, 10, 2, IGNORE_LABEL]]


def test_fit_rows_chooses_the_fullest_row_that_takes_an_example():
    lists = [[1] * 5, [2] * 3, [3] * 2]  # rows of 6: room 1 and room 3 are open when [3 3] comes
    rows, _ = fit_rows(lists, lists, seq_len=6)
    assert rows.tolist() == [[1] * 5 + [PAD_ID], [2, 2, 2, 3, 3, PAD_ID]]


def test_fit_rows_starts_a_long_example_on_its_own_row_and_places_its_tail():
    lists = [[1, 2, 3, 4, 5, 6, 7, 8], [9, 9]]
    rows, row_labels = fit_rows(lists, lists, seq_len=5)
    assert rows.tolist() == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 9]]
    assert torch.equal(rows, row_labels)


def test_fit_rows_loses_no_token_of_a_real_mix(tokenizer, examples):
    ids = encode_examples(tokenizer, examples)
    rows, row_labels = fit_rows(ids, ids, seq_len=64)
    kept = rows[rows != PAD_ID]
    assert len(kept) == sum(len(i) for i in ids) and (row_labels[rows == PAD_ID] == IGNORE_LABEL).all()
    assert sorted(kept.tolist()) == sorted(t for i in ids for t in i)
    assert (rows == PAD_ID).float().mean() < 0.10  # short examples fill the rows' tails (measured 0.069)


def test_fit_rows_refuses_rows_too_short():
    with pytest.raises(ValueError, match="seq_len"):
        fit_rows([[1, 2]], [[1, 2]], seq_len=1)


def test_batches_are_deterministic_and_addressable(dataset, tokenizer, examples):
    same = PackedDataset.from_examples(tokenizer, examples, seq_len=64, batch_size=4, seed=3)
    other_seed = PackedDataset.from_examples(tokenizer, examples, seq_len=64, batch_size=4, seed=4)
    assert dataset.batch(0).shape == (4, 64)
    assert all(torch.equal(dataset.batch(s), same.batch(s)) for s in (0, 5, 77))
    assert not torch.equal(dataset.batch(0), other_seed.batch(0))


def test_an_epoch_visits_every_row_once_and_the_next_epoch_reshuffles(dataset):
    per_epoch, size = dataset.batches_per_epoch, dataset.batch_size
    order = dataset.epoch_indices(0)
    assert sorted(order) == list(range(len(dataset)))  # one rank: a permutation of all rows
    for step in range(per_epoch):
        assert torch.equal(dataset.batch(step), dataset.rows[order[step * size : (step + 1) * size]])
    assert dataset.position(per_epoch) == dataset.position(per_epoch)  # pure
    assert dataset.position(per_epoch).epoch == 1 and dataset.position(per_epoch).batch_in_epoch == 0
    assert dataset.epoch_indices(0) != dataset.epoch_indices(1)


def test_resuming_continues_at_the_exact_position(dataset):
    stream = BatchStream(dataset)
    for _ in range(7):
        next(stream)
    state = stream.state_dict()
    expected = [next(stream) for _ in range(3)]
    resumed = BatchStream(dataset)
    resumed.load_state_dict(state)
    assert resumed.position.step == 7
    assert all(torch.equal(a, next(resumed)) for a in expected)


def test_resuming_against_other_data_is_refused(dataset, tokenizer, examples):
    state = BatchStream(dataset, step=3).state_dict()
    shorter = PackedDataset.from_examples(tokenizer, examples[:300], seq_len=64, batch_size=4, seed=3)
    with pytest.raises(ValueError, match="different data"):
        BatchStream(shorter).load_state_dict(state)


@pytest.mark.parametrize("world_size", [2, 3])
def test_rank_shards_match_distributed_sampler_and_are_disjoint(dataset, world_size):
    shards = [dataset.shard(rank, world_size) for rank in range(world_size)]
    for epoch in (0, 2):
        seen: set[int] = set()
        for rank, shard in enumerate(shards):
            sampler = DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=dataset.seed, drop_last=True
            )
            sampler.set_epoch(epoch)
            assert shard.epoch_indices(epoch) == list(sampler)
            assert seen.isdisjoint(shard.epoch_indices(epoch))
            seen |= set(shard.epoch_indices(epoch))
    assert shards[0].batches_per_epoch == len(dataset) // world_size // dataset.batch_size


def test_too_little_data_for_one_batch_is_a_clear_error(tokenizer, examples):
    with pytest.raises(ValueError, match="cannot fill one batch"):
        PackedDataset.from_examples(tokenizer, examples[:2], seq_len=64, batch_size=4, seed=0)


def test_answer_labels_score_the_answer_and_eos_only(tokenizer, examples):
    ids = encode_examples(tokenizer, examples)
    labels = answer_labels(tokenizer, examples)
    for example, row, label in zip(examples, ids, labels, strict=True):
        n_answer = len(tokenizer.encode_batch([example.answer], eos=True)[0])
        assert label[-n_answer:] == row[-n_answer:] and label[-1] == EOS_ID
        assert label[: -n_answer] == [IGNORE_LABEL] * (len(row) - n_answer)


def test_a_prompt_share_keeps_that_share_of_whole_examples_scored(tokenizer, examples):
    ids = encode_examples(tokenizer, examples)
    labels = answer_labels(tokenizer, examples, prompt_share=0.5)
    whole = [label == row for row, label in zip(ids, labels, strict=True)]
    assert 0.3 < sum(whole) / len(whole) < 0.7
    assert answer_labels(tokenizer, examples, prompt_share=1.0) == ids


def test_a_dataset_with_labels_gives_ids_and_labels_of_the_same_rows(tokenizer, examples):
    plain = PackedDataset.from_examples(tokenizer, examples, 32, 4, seed=0)
    labelled = PackedDataset.from_examples(tokenizer, examples, 32, 4, seed=0, prompt_loss_share=0.0)
    batch = labelled.batch(3)
    assert torch.equal(batch["input_ids"], plain.batch(3))
    scored = batch["labels"] != IGNORE_LABEL
    assert 0 < scored.float().mean() < 0.6
    assert torch.equal(batch["labels"][scored], batch["input_ids"][scored])
    assert torch.equal(labelled.shard(1, 2).batch(0)["input_ids"], plain.shard(1, 2).batch(0))
    with pytest.raises(ValueError, match="labels"):
        PackedDataset(plain.rows, 4, 0, labels=plain.rows[:, :5])
