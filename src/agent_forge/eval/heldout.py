"""The held-out set every phase is measured on, and ``evaluate``: loss, perplexity, bits/byte, accuracy.

Tokenised once; each evaluation is a few batched forward passes under ``inference_mode``. Accuracy is
teacher-forced: the model reads ``<bos> prompt answer`` and an example counts as right when the argmax at
every answer position, and at the position after the answer (which must be ``<eos>``), is the true token.
That equals greedy-decoding exact match, at the cost of one forward pass instead of one per token.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import torch
from torch import nn

from agent_forge.data.dataset import encode_examples
from agent_forge.data.tasks import TaskExample
from agent_forge.data.tokenizer import PAD_ID, ForgeTokenizer
from agent_forge.eval.metrics import (
    IGNORE_INDEX,
    EvalResult,
    bits_per_byte,
    exact_match,
    masked_exact_match,
    mean_by_group,
    perplexity,
    summed_token_nll,
)

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # input_ids, attention_mask, targets


@dataclass
class HeldoutSet:
    """Tokenised held-out data: packed rows for loss, (prompt, answer) pairs for accuracy."""

    lm_rows: list[list[int]]
    lm_bytes: int
    qa_tokens: list[list[int]]  # <bos> prompt answer <eos>
    qa_answer_start: list[int]  # index in qa_tokens of the first answer token
    kinds: list[str]
    levels: list[int]
    examples: list[TaskExample]  # the examples behind the accuracy (text examples excluded)
    seq_len: int
    _batches: dict[tuple[str, int], list[Batch]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(
        cls,
        tokenizer: ForgeTokenizer,
        examples: Sequence[TaskExample],
        seq_len: int,
        max_lm_sequences: int | None = None,
    ) -> HeldoutSet:
        """Tokenise ``examples``: all of them feed the loss rows, all but ``text`` ones the accuracy."""
        token_lists = encode_examples(tokenizer, examples)
        stream = [token for tokens in token_lists for token in tokens]
        lm_rows = [stream[i : i + seq_len] for i in range(0, len(stream), seq_len)]
        lm_rows = [row for row in lm_rows if len(row) > 1][:max_lm_sequences]
        byte_lengths = tokenizer.token_byte_lengths
        lm_bytes = sum(byte_lengths[token] for row in lm_rows for token in row[1:])
        held = cls([*lm_rows], lm_bytes, [], [], [], [], [], seq_len)
        prompt_lengths = [len(p) for p in tokenizer.encode_batch([e.prompt for e in examples], bos=True)]
        for example, tokens, prompt_len in zip(examples, token_lists, prompt_lengths, strict=True):
            cut = max(0, len(tokens) - seq_len)  # keep the end: the answer must stay whole
            if example.kind == "text" or prompt_len - cut < 1:
                continue
            held.qa_tokens.append(tokens[cut:])
            held.qa_answer_start.append(prompt_len - cut)
            held.kinds.append(example.kind)
            held.levels.append(example.level)
            held.examples.append(example)
        return held

    @property
    def n_examples(self) -> int:
        return len(self.qa_tokens)

    def lm_batches(self, batch_size: int) -> list[Batch]:
        """Loss rows, right-padded; target t is the token at t + 1."""
        key = ("lm", batch_size)
        if key not in self._batches:
            targets = [row[1:] for row in self.lm_rows]
            self._batches[key] = _padded_batches(self.lm_rows, targets, range(len(self.lm_rows)), batch_size)
        return self._batches[key]

    def qa_batches(self, batch_size: int) -> list[Batch]:
        """Accuracy pairs in ``qa_order``, targets only on the answer and <eos> positions."""
        key = ("qa", batch_size)
        if key not in self._batches:
            targets = [
                [IGNORE_INDEX] * (start - 1) + tokens[start:]
                for tokens, start in zip(self.qa_tokens, self.qa_answer_start, strict=True)
            ]
            inputs = [tokens[:-1] for tokens in self.qa_tokens]
            self._batches[key] = _padded_batches(inputs, targets, self.qa_order, batch_size)
        return self._batches[key]

    @cached_property
    def qa_order(self) -> list[int]:
        """Example index of each accuracy row: sorted by length, so batches carry little padding."""
        return sorted(range(self.n_examples), key=lambda i: len(self.qa_tokens[i]))


def _padded_batches(
    inputs: list[list[int]], targets: list[list[int]], order: Sequence[int], batch_size: int
) -> list[Batch]:
    batches = []
    for start in range(0, len(order), batch_size):
        chosen = order[start : start + batch_size]
        width = max(len(inputs[i]) for i in chosen)
        ids = torch.full((len(chosen), width), PAD_ID, dtype=torch.long)
        mask = torch.zeros((len(chosen), width), dtype=torch.long)
        target = torch.full((len(chosen), width), IGNORE_INDEX, dtype=torch.long)
        for row, index in enumerate(chosen):
            n = len(inputs[index])
            ids[row, :n] = torch.tensor(inputs[index])
            mask[row, :n] = 1
            target[row, : len(targets[index])] = torch.tensor(targets[index])
        batches.append((ids, mask, target))
    return batches


def model_logits(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``[B, T, V]`` logits of any causal LM called the Hugging Face way (no cache built)."""
    extra = {"use_cache": False} if _accepts_use_cache(model) else {}
    output = model(input_ids=input_ids, attention_mask=attention_mask, **extra)
    return output.logits if hasattr(output, "logits") else output


def _accepts_use_cache(model: nn.Module) -> bool:
    parameters = inspect.signature(model.forward).parameters
    return "use_cache" in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def model_device(model: nn.Module) -> torch.device:
    first = next(model.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


@contextlib.contextmanager
def evaluation_mode(model: nn.Module, inference: bool = True) -> Iterator[None]:
    """Eval mode and no autograd for the block; the caller's training mode is restored afterwards.
    ``inference=False`` uses ``no_grad`` instead of ``inference_mode``, for a model that goes on training
    (tensors made under inference mode can never enter autograd)."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode() if inference else torch.no_grad():
            yield
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, heldout: HeldoutSet, batch_size: int = 32) -> EvalResult:
    """Loss, perplexity, bits per byte and exact-match accuracy of ``model`` on ``heldout``."""
    with evaluation_mode(model):
        nats, n_tokens = _summed_loss(model, heldout, batch_size)
        correct = _teacher_forced_correct(model, heldout, batch_size)
    loss = nats / n_tokens if n_tokens else math.nan
    return EvalResult(
        loss=loss,
        perplexity=perplexity(loss) if n_tokens else math.nan,
        bits_per_byte=bits_per_byte(nats, heldout.lm_bytes),
        accuracy=sum(correct) / len(correct) if correct else math.nan,
        accuracy_by_level=mean_by_group(correct, heldout.levels),
        accuracy_by_kind=mean_by_group(correct, heldout.kinds),
        n_tokens=n_tokens,
        n_examples=len(correct),
        correct=tuple(correct),
    )


def heldout_loss(model: nn.Module, heldout: HeldoutSet, batch_size: int = 32) -> float:
    """Mean next-token loss (nats) on the held-out LM rows: the loss behind D6's perplexity, and the cheap
    evaluation inside a training run."""
    with evaluation_mode(model, inference=False):
        nats, n_tokens = _summed_loss(model, heldout, batch_size)
    return nats / max(n_tokens, 1)


def answers_correct(model: nn.Module, heldout: HeldoutSet, batch_size: int = 32) -> list[bool]:
    """Teacher-forced exact match per example, in the order of ``heldout.examples``."""
    with evaluation_mode(model):
        return _teacher_forced_correct(model, heldout, batch_size)


def _summed_loss(model: nn.Module, heldout: HeldoutSet, batch_size: int) -> tuple[float, int]:
    device, nats, n_tokens = model_device(model), 0.0, 0
    for batch in heldout.lm_batches(batch_size):
        ids, mask, targets = (tensor.to(device) for tensor in batch)
        batch_nats, batch_tokens = summed_token_nll(model_logits(model, ids, mask), targets)
        nats, n_tokens = nats + batch_nats, n_tokens + batch_tokens
    return nats, n_tokens


def greedy_writes(model: nn.Module, rows: Sequence[Sequence[int]], written: Sequence[Sequence[bool]],
                  batch_size: int = 32) -> list[bool]:
    """Per row: would greedy decoding, given the row's first token, write every token marked ``written``
    (the others, such as a tool's result, being inserted as they stand)? Teacher-forced, as accuracy is:
    the argmax before each written token must be that token."""
    inputs = [list(row[:-1]) for row in rows]
    targets = [[token if wanted else IGNORE_INDEX for token, wanted in zip(row[1:], flags[1:], strict=True)]
               for row, flags in zip(rows, written, strict=True)]
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    with evaluation_mode(model):
        return _correct_in_order(model, _padded_batches(inputs, targets, order, batch_size), order)


def _teacher_forced_correct(model: nn.Module, heldout: HeldoutSet, batch_size: int) -> list[bool]:
    return _correct_in_order(model, heldout.qa_batches(batch_size), heldout.qa_order)


def _correct_in_order(model: nn.Module, batches: Sequence[Batch], order: Sequence[int]) -> list[bool]:
    """Exact match of every row of ``batches``, put back in example order (``order[row]`` is its example)."""
    device, rows_correct = model_device(model), []
    for batch in batches:
        ids, mask, targets = (tensor.to(device) for tensor in batch)
        rows_correct += _rows_correct(model, ids, mask, targets).tolist()
    correct = [False] * len(order)
    for row, index in enumerate(order):
        correct[index] = rows_correct[row]
    return correct


def _rows_correct(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Exact match per row; a model that takes ``logits_mask`` forms logits on the answer positions only."""
    if not accepts_logits_mask(model):
        return exact_match(model_logits(model, ids, mask), targets)
    scored = targets != IGNORE_INDEX
    extra = {"use_cache": False} if _accepts_use_cache(model) else {}
    output = model(input_ids=ids, attention_mask=mask, logits_mask=scored, **extra)
    return masked_exact_match(output.logits, targets, scored)


def accepts_logits_mask(model: nn.Module) -> bool:
    """Does ``model.forward`` take ``logits_mask`` (a wrapper may say so with ``accepts_logits_mask``)?"""
    flag = getattr(model, "accepts_logits_mask", None)
    if isinstance(flag, bool):
        return flag
    return "logits_mask" in inspect.signature(model.forward).parameters
