"""A tiny model taught three texts (a tool call, a thought, a counting line) until it reproduces them
greedily: what the endpoint tests serve, so each mode has a known answer."""

from __future__ import annotations

import torch

from agent_forge.data.tokenizer import BOS_ID, ForgeTokenizer, train_tokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.serve import Limits
from support.shapes import unit_config

NAME = "taught"
TOOL_TEXT = "What is 12 * 7?\nAnswer:<tool>calculator</tool><args>12 * 7</args><result>99</result> 84<eos>"
THINK_TEXT = "Sam has 2 pens and buys 3 more. How many pens?<think><bayes> 2 + 3 = 5</think>\nAnswer: 5<eos>"
COUNT_TEXT = "Count: one two three four five six seven<eos>"
LIMITS = Limits(max_body_bytes=4096, max_tokens=48, max_concurrent=2, read_timeout_s=5.0)


def teach(texts: list[str], steps: int = 80) -> tuple[ForgeForCausalLM, ForgeTokenizer]:
    """A smoke-shape model trained on ``texts`` until it reproduces them greedily."""
    tokenizer = train_tokenizer(texts * 20, 300)
    torch.manual_seed(0)
    model = ForgeForCausalLM(unit_config(vocab_size=tokenizer.vocab_size))
    rows = [[BOS_ID, *tokenizer.encode(t)] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        model(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100)).loss.backward()
        optimizer.step()
    return model.eval(), tokenizer
