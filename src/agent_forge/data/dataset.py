"""Token datasets: examples packed into fixed-length rows, batches addressable by their global step.

``batch(step)`` is a pure function of (data, seed, rank, world size, step), so a run resumed at step s
reads exactly the batch it would have read, and each epoch reshuffles rows the way PyTorch's
``DistributedSampler(shuffle=True, drop_last=True)`` does, which gives every rank its own shard.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch.utils.data import Dataset

from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import PAD_ID, ForgeTokenizer

IGNORE_LABEL = -100  # the label Hugging Face losses skip


def encode_examples(tokenizer: ForgeTokenizer, examples: Sequence[TaskExample]) -> list[list[int]]:
    """``<bos> prompt answer <eos>`` per example, prompt and answer encoded apart.

    Encoding them apart fixes the token boundary at the answer, so training, teacher-forced accuracy
    and generation all see the same prompt tokens.
    """
    prompts = tokenizer.encode_batch([e.prompt for e in examples], bos=True)
    answers = tokenizer.encode_batch([e.answer for e in examples], eos=True)
    return [p + a for p, a in zip(prompts, answers, strict=True)]


def answer_labels(tokenizer: ForgeTokenizer, examples: Sequence[TaskExample], prompt_share: float = 0.0
                  ) -> list[list[int]]:
    """Per example, the token ids of ``encode_examples`` with the prompt tokens replaced by -100, except in
    a ``prompt_share`` of the examples (chosen by uid hash), which keep every token scored.

    Packed beside the ids, they make the loss read mostly the answer tokens (and <eos>): the model shifts
    labels itself, so position i is scored on label i + 1, an answer token. The share of whole examples
    keeps the model a language model of the prompts too, at a fraction of their weight.
    """
    return labelled_examples(tokenizer, examples, prompt_share)[1]


def labelled_examples(tokenizer: ForgeTokenizer, examples: Sequence[TaskExample], prompt_share: float
                      ) -> tuple[list[list[int]], list[list[int]]]:
    """``encode_examples`` and ``answer_labels`` together, every text encoded once."""
    prompts = tokenizer.encode_batch([e.prompt for e in examples], bos=True)
    answers = tokenizer.encode_batch([e.answer for e in examples], eos=True)
    ids = [p + a for p, a in zip(prompts, answers, strict=True)]
    labels = [(p if hash_fraction(e.uid) < prompt_share else [IGNORE_LABEL] * len(p)) + a
              for e, p, a in zip(examples, prompts, answers, strict=True)]
    return ids, labels


def hash_fraction(uid: str, salt: str = "") -> float:
    """A uniform number in [0, 1) fixed by the example (training examples repeat; all copies agree); a
    ``salt`` gives an independent number for another choice about the same example."""
    return int(hashlib.sha1(f"{uid}{salt}".encode()).hexdigest()[:8], 16) / 2**32


def pack_tokens(token_lists: Sequence[Sequence[int]], seq_len: int) -> torch.Tensor:
    """Concatenate and cut into rows of ``seq_len`` tokens; a final partial row is dropped."""
    if seq_len < 2:
        raise ValueError("seq_len must be at least 2")
    lengths = np.fromiter((len(t) for t in token_lists), dtype=np.int64, count=len(token_lists))
    stream = np.fromiter((i for t in token_lists for i in t), dtype=np.int64, count=int(lengths.sum()))
    n_rows = len(stream) // seq_len
    return torch.from_numpy(stream[: n_rows * seq_len].reshape(n_rows, seq_len).copy())


def fit_rows(token_lists: Sequence[Sequence[int]], label_lists: Sequence[Sequence[int]], seq_len: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``seq_len`` that hold whole examples: each goes into the open row with the least room that
    takes it (best fit, in the given order), a new row when none does; a row's unused tail is ``<pad>``
    with label -100, never scored. An example longer than a row fills rows of its own from its start and its
    tail is placed like an example. Unlike ``pack_tokens``, which cuts the stream anywhere, an example that
    fits a row is never split, so no row asks the model to continue a problem whose start it cannot see
    (torchtune's ``split_across_pack=False``)."""
    if seq_len < 2:
        raise ValueError("seq_len must be at least 2")
    rows: list[list[int]] = []
    free_rows: dict[int, list[int]] = {}  # room left -> rows with that much room
    free_sizes: list[int] = []  # the sorted keys of free_rows whose lists are not empty
    for piece in _row_pieces(token_lists, seq_len):
        size = piece[2] - piece[1]
        where = bisect.bisect_left(free_sizes, size)
        if where < len(free_sizes):  # the fullest open row that still takes the piece
            room = free_sizes[where]
            row = free_rows[room].pop()
            if not free_rows[room]:
                free_sizes.pop(where)
        else:
            room, row = seq_len, len(rows)
            rows.append([])
        rows[row].append(piece)
        if room - size > 0:
            if not free_rows.setdefault(room - size, []):
                bisect.insort(free_sizes, room - size)
            free_rows[room - size].append(row)
    return _fill_rows(rows, token_lists, label_lists, seq_len)


def pack_rows(token_lists: Sequence[Sequence[int]], label_lists: Sequence[Sequence[int]], seq_len: int,
              packing: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids and labels in rows by ``packing``: ``"fit"`` (``fit_rows``) or ``"concat"`` (``pack_tokens``)."""
    if packing == "fit":
        return fit_rows(token_lists, label_lists, seq_len)
    return pack_tokens(token_lists, seq_len), pack_tokens(label_lists, seq_len)


def _row_pieces(token_lists: Sequence[Sequence[int]], seq_len: int) -> Iterator[tuple[int, int, int]]:
    """(example, start, end) spans of at most ``seq_len`` tokens, whole examples where they fit."""
    for index, tokens in enumerate(token_lists):
        for start in range(0, len(tokens), seq_len):
            yield index, start, min(start + seq_len, len(tokens))


def _fill_rows(rows: list[list[tuple[int, int, int]]], token_lists: Sequence[Sequence[int]],
               label_lists: Sequence[Sequence[int]], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = np.full((len(rows), seq_len), PAD_ID, dtype=np.int64)
    labels = np.full((len(rows), seq_len), IGNORE_LABEL, dtype=np.int64)
    for row, pieces in enumerate(rows):
        column = 0
        for index, start, end in pieces:
            ids[row, column:column + end - start] = token_lists[index][start:end]
            labels[row, column:column + end - start] = label_lists[index][start:end]
            column += end - start
    return torch.from_numpy(ids), torch.from_numpy(labels)


@dataclass(frozen=True)
class DataPosition:
    """Where a global step falls: which epoch and which batch inside it."""

    step: int
    epoch: int
    batch_in_epoch: int


class PackedDataset(Dataset):
    """Rows of token ids with deterministic, rank-sharded, per-epoch shuffled batches."""

    def __init__(
        self, rows: torch.Tensor, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
        labels: torch.Tensor | None = None,
    ) -> None:
        if rows.dim() != 2 or rows.dtype != torch.long:
            raise ValueError("rows must be a 2-D LongTensor [n_rows, seq_len]")
        if labels is not None and labels.shape != rows.shape:
            raise ValueError("labels must have the shape of rows")
        self.labels = labels
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} must be in [0, {world_size})")
        self.rows, self.batch_size, self.seed = rows, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.rows_per_rank = len(rows) // world_size
        if self.batches_per_epoch < 1:
            raise ValueError(
                f"{len(rows)} rows over {world_size} rank(s) cannot fill one batch of {batch_size}; "
                "use more examples, a shorter seq_len or a smaller batch"
            )
        self._cached_epoch: tuple[int, list[int]] | None = None

    @classmethod
    def from_examples(
        cls,
        tokenizer: ForgeTokenizer,
        examples: Sequence[TaskExample],
        seq_len: int,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        prompt_loss_share: float = 1.0,
    ) -> PackedDataset:
        """Packed rows of ``examples``; with ``prompt_loss_share`` below 1 each batch carries labels that
        score the prompt tokens of that share of the examples only (answers are always scored)."""
        if prompt_loss_share >= 1.0:
            return cls(pack_tokens(encode_examples(tokenizer, examples), seq_len), batch_size, seed, rank,
                       world_size)
        ids, label_lists = labelled_examples(tokenizer, examples, prompt_loss_share)
        rows, labels = pack_tokens(ids, seq_len), pack_tokens(label_lists, seq_len)
        return cls(rows, batch_size, seed, rank, world_size, labels)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rows[index]

    @property
    def seq_len(self) -> int:
        return self.rows.shape[1]

    @property
    def batches_per_epoch(self) -> int:
        return self.rows_per_rank // self.batch_size

    @cached_property
    def fingerprint(self) -> str:
        """sha1 of the rows: a resumed run can check it reads the same data."""
        return hashlib.sha1(self.rows.numpy().tobytes()).hexdigest()[:16]

    def shard(self, rank: int, world_size: int) -> PackedDataset:
        """The same rows seen by another rank."""
        return PackedDataset(self.rows, self.batch_size, self.seed, rank, world_size, self.labels)

    def epoch_indices(self, epoch: int) -> list[int]:
        """This rank's row order in ``epoch``: DistributedSampler(shuffle=True, drop_last=True)'s."""
        if self._cached_epoch is None or self._cached_epoch[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed + epoch)
            order = torch.randperm(len(self.rows), generator=generator).tolist()
            total = self.rows_per_rank * self.world_size
            self._cached_epoch = (epoch, order[self.rank : total : self.world_size])
        return self._cached_epoch[1]

    def position(self, step: int) -> DataPosition:
        if step < 0:
            raise ValueError("step must be >= 0")
        epoch, within = divmod(step, self.batches_per_epoch)
        return DataPosition(step, epoch, within)

    def batch(self, step: int) -> torch.Tensor | dict[str, torch.Tensor]:
        """The ``[batch_size, seq_len]`` batch of global step ``step`` on this rank (with its labels as a
        dict ``input_ids`` / ``labels`` when the dataset has labels)."""
        where = self.position(step)
        indices = self.epoch_indices(where.epoch)
        chosen = indices[where.batch_in_epoch * self.batch_size : (where.batch_in_epoch + 1) * self.batch_size]
        if self.labels is None:
            return self.rows[chosen]
        return {"input_ids": self.rows[chosen], "labels": self.labels[chosen]}


class BatchStream:
    """An iterator over ``dataset.batch(step)`` that counts steps and can be saved and resumed."""

    def __init__(self, dataset: PackedDataset, step: int = 0) -> None:
        self.dataset, self.step = dataset, step

    @property
    def position(self) -> DataPosition:
        return self.dataset.position(self.step)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        batch = self.dataset.batch(self.step)
        self.step += 1
        return batch

    def state_dict(self) -> dict:
        return {"step": self.step, "seed": self.dataset.seed, "fingerprint": self.dataset.fingerprint}

    def load_state_dict(self, state: dict) -> None:
        """Resume at the saved step; refuses a state saved against other data or another seed."""
        if state["fingerprint"] != self.dataset.fingerprint or state["seed"] != self.dataset.seed:
            raise ValueError("this data position was saved for different data or another seed")
        self.step = int(state["step"])
