"""Shared data and a briefly trained tiny model for the evaluation tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from eval_tiny_models import tiny_llama, train_steps
from transformers import LlamaForCausalLM

from agent_forge.data.dataset import PackedDataset
from agent_forge.data.tasks import TaskExample, mix_tasks, training_text
from agent_forge.data.tokenizer import ForgeTokenizer, train_tokenizer


@dataclass
class TaskData:
    tokenizer: ForgeTokenizer
    train: list[TaskExample]
    heldout: list[TaskExample]
    dataset: PackedDataset


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """Tiny models run as fast on one thread, and a shared 2-core machine makes two threads thrash."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def task_data() -> TaskData:
    train = mix_tasks(1500, seed=0, kinds=["mc", "arith"], levels=[1])
    heldout = mix_tasks(60, seed=0, split="heldout", kinds=["mc", "arith"], levels=[1])
    tokenizer = train_tokenizer([training_text(e) for e in train], vocab_size=400)
    dataset = PackedDataset.from_examples(tokenizer, train, seq_len=64, batch_size=16, seed=0)
    return TaskData(tokenizer, train, heldout, dataset)


@pytest.fixture(scope="session")
def trained_model(task_data) -> LlamaForCausalLM:
    """About 2 s of training: it answers some held-out questions right and some wrong."""
    model = tiny_llama(task_data.tokenizer.vocab_size)
    train_steps(model, task_data.dataset, steps=120)
    return model
