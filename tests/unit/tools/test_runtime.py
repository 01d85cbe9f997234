"""The decoding engine and the tool runtime, on real (tiny) models and a real tokenizer."""

from __future__ import annotations

import pytest
import torch

from agent_forge.data.tokenizer import BOS_ID, PAD_ID, ForgeTokenizer, train_tokenizer
from agent_forge.model import ForgeForCausalLM
from agent_forge.tools import AnswerCue, ToolRuntime, decode
from support.shapes import unit_config

CORPUS = ["What is 12 * 7? Answer: 84", "How many m are in 2 km? Answer: 2000", "Tom has 3 apples."] * 20


@pytest.fixture(scope="module")
def tokenizer() -> ForgeTokenizer:
    return train_tokenizer(CORPUS, 300)


def smoke_model(seed: int) -> ForgeForCausalLM:
    torch.manual_seed(seed)
    return ForgeForCausalLM(unit_config()).eval()


def naive_greedy(model: ForgeForCausalLM, prompt: list[int], pad: int, steps: int, hook) -> list[int]:
    """Full recomputation every token (same left padding, same insertions): what decode() must reproduce."""
    tokens: list[int] = []
    calls = 0
    while len(tokens) - calls * 2 < steps:
        ids = torch.tensor([[PAD_ID] * pad + prompt + tokens])
        mask = torch.tensor([[0] * pad + [1] * (len(prompt) + len(tokens))])
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits[0, -1]
        tokens.append(int(logits.argmax()))
        extra = hook(0, tokens, calls) if len(tokens) - calls * 2 < steps else None
        if extra:
            tokens.extend(extra)
            calls += 1
    return tokens


def test_cached_padded_decoding_with_insertions_equals_recomputation() -> None:
    model = smoke_model(1)
    prompts = [[BOS_ID, 40, 41, 42], [BOS_ID, 50, 51], [BOS_ID, 60, 61, 62]]

    def hook(row: int, tokens: list[int], calls: int) -> list[int] | None:
        return [100 + row, 200] if len(tokens) in (3, 8) and calls < 2 else None

    decoded = decode(model, prompts, 9, hook=hook)
    for row, prompt in enumerate(prompts):
        pad = 4 - len(prompt)
        expected = naive_greedy(model, prompt, pad, 9, lambda _r, t, c, row=row: hook(row, t, c))
        assert decoded[row].tokens == expected
        assert decoded[row].model_tokens == 9 and decoded[row].inserts == 2
        assert decoded[row].sampled.count(False) == 4


def test_sampling_is_reproducible_from_the_generator_and_differs_across_seeds() -> None:
    model = smoke_model(2)
    prompts = [[BOS_ID, 30, 31]] * 4

    def run(seed: int) -> list[list[int]]:
        generator = torch.Generator().manual_seed(seed)
        return [d.tokens for d in decode(model, prompts, 12, temperature=1.0, generator=generator)]

    assert run(0) == run(0)
    assert run(0) != run(1)
    assert len({tuple(t) for t in run(0)}) > 1  # rows sharing a prompt draw different continuations


def test_the_runtime_hook_executes_a_complete_call(tokenizer: ForgeTokenizer) -> None:
    runtime = ToolRuntime(tokenizer, max_calls=1)
    tokens = tokenizer.encode("Answer:<tool>calculator</tool><args>12 * 7</args>")
    inserted = runtime(0, tokens, 0)
    assert inserted is not None and tokenizer.decode(inserted) == "<result>84</result>"
    assert runtime(0, tokens, 1) is None  # the call budget is spent
    assert runtime(0, tokenizer.encode("<tool>calculator</tool><args>1 /"), 0) is None
    bad = runtime(1, tokenizer.encode("<tool>calculator</tool><args>1 / 0</args>"), 0)
    assert bad is not None and tokenizer.decode(bad) == "<result>error: division by zero</result>"


def test_the_answer_cue_follows_the_first_thought_and_ends_the_calls(tokenizer: ForgeTokenizer) -> None:
    cue = tokenizer.encode(" Answer:")
    hook = AnswerCue(tokenizer, [cue, []], ToolRuntime(tokenizer))
    call = tokenizer.encode("<think><tool>calculator</tool><args>2 + 3</args>")
    assert tokenizer.decode(hook(0, call, 0)) == "<result>5</result>"
    assert hook(0, [*call, tokenizer.special_id("</think>")], 1) == cue
    assert hook(0, call, 2) is None  # the answer has begun: no more calls
    assert hook(1, [tokenizer.special_id("</think>")], 0) is None  # an empty cue inserts nothing
    assert AnswerCue(tokenizer, [cue])(0, call, 0) is None  # without a tool runtime calls do not run


def test_the_nucleus_keeps_the_fewest_top_tokens_reaching_top_p() -> None:
    from agent_forge.engine import nucleus

    probs = torch.tensor([[0.1, 0.5, 0.15, 0.25], [0.7, 0.1, 0.1, 0.1]])
    kept = nucleus(probs, 0.7)
    # row 0: 0.5 + 0.25 = 0.75 reaches 0.7 with two tokens; row 1: the top token alone already holds 0.7
    torch.testing.assert_close(kept, torch.tensor([[0.0, 0.5 / 0.75, 0.0, 0.25 / 0.75], [1.0, 0.0, 0.0, 0.0]]))
    torch.testing.assert_close(nucleus(probs, 1.0), probs)
    assert nucleus(probs, 1e-6).count_nonzero(dim=-1).tolist() == [1, 1]  # the top token always stays


def test_a_tiny_nucleus_samples_the_greedy_tokens_and_a_watch_stops_a_row() -> None:
    model = smoke_model(2)
    prompts = [[BOS_ID, 30, 31], [BOS_ID, 40, 41]]
    greedy = [d.tokens for d in decode(model, prompts, 10)]
    narrow = decode(model, prompts, 10, temperature=1.5, top_p=1e-6, generator=torch.Generator().manual_seed(0))
    assert [d.tokens for d in narrow] == greedy
    seen: list[tuple[int, int]] = []

    def watch(row: int, tokens: list[int]) -> bool:
        seen.append((row, len(tokens)))
        return row == 1 and len(tokens) == 4

    watched = decode(model, prompts, 10, watch=watch)
    assert watched[0].tokens == greedy[0] and watched[1].tokens == greedy[1][:4]
    assert (0, 9) in seen and (0, 10) not in seen  # the token that fills the budget is not watched
