"""The numpy runtime computes what PyTorch computes, decodes with its cache, and loads no torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from agent_forge.export.agreement import torch_greedy
from agent_forge.export.runtime import greedy_generate, unpack
from agent_forge.export.runtime.bundle import ThinkTokens, think_generate
from agent_forge.export.runtime.safetensors_np import SafetensorsError, read_safetensors
from agent_forge.quant.ternary_pack import pack_ternary, unpack_ternary

EXPORT_DIR = Path(__file__).resolve().parents[3] / "src" / "agent_forge" / "export"


def _torch_logits(model, tokens: list[int]) -> np.ndarray:
    with torch.inference_mode():
        return model(input_ids=torch.tensor([tokens]), use_cache=False).logits[0].numpy()


@pytest.mark.parametrize("fmt", ["tq2_0", "tq1_0"])
@pytest.mark.parametrize(("shape", "row_aligned"), [((7, 300), True), ((5, 130), False), ((3, 256), True)])
def test_unpack_matches_the_packer(fmt: str, shape: tuple[int, int], row_aligned: bool) -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(-1, 2, size=shape).astype(np.int8)
    scales = rng.uniform(0.01, 2.0, size=shape[0]) if row_aligned else 0.37
    packed = pack_ternary(values, scales, fmt, row_aligned)
    got_values, got_scales = unpack(packed.data, fmt, shape, row_aligned)
    want_values, want_scales = unpack_ternary(packed)
    np.testing.assert_array_equal(got_values, values)
    np.testing.assert_array_equal(got_values, want_values)
    np.testing.assert_array_equal(got_scales, want_scales)


def test_safetensors_reader_matches_the_library(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    tensors = {"f32": rng.normal(size=(3, 4)).astype(np.float32), "f16": rng.normal(size=5).astype(np.float16),
               "u8": rng.integers(0, 255, size=(2, 66)).astype(np.uint8), "i64": np.arange(4, dtype=np.int64),
               "i8": np.array([-1, 0, 1], dtype=np.int8)}
    save_file(tensors, tmp_path / "t.safetensors", metadata={"format": "x"})
    got, metadata = read_safetensors(tmp_path / "t.safetensors")
    assert metadata == {"format": "x"}
    for key, value in tensors.items():
        assert got[key].dtype == value.dtype
        np.testing.assert_array_equal(got[key], value)
    (tmp_path / "bad.safetensors").write_bytes(b"\xff" * 16)
    with pytest.raises(SafetensorsError):
        read_safetensors(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("bitlinear", [True, False])
def test_runtime_logits_match_pytorch(bitlinear, make_model, make_runtime, ids, tmp_path: Path) -> None:
    """50 tokens cross the attention window (16) and several memory chunks (8); T_max = 3."""
    model = make_model(bitlinear)
    runtime = make_runtime(model, tmp_path)
    tokens = ids(50)
    logits, halt = runtime.forward(tokens)
    with torch.inference_mode():
        ref = model(input_ids=torch.tensor([tokens]), use_cache=False)
    np.testing.assert_allclose(logits, ref.logits[0].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(halt, ref.halt_steps[0].numpy())
    assert len(set(halt.tolist())) > 1, "the check needs positions that halt at different steps"


def test_cached_decoding_equals_one_pass(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    runtime = make_runtime(bit_model, tmp_path)
    tokens = ids(40, seed=2)
    full, _ = runtime.forward(tokens)
    cache = runtime.new_cache()
    parts = [runtime.forward(tokens[:11], cache)[0]]
    parts += [runtime.forward(tokens[t : t + 1], cache)[0] for t in range(11, 29)]
    parts.append(runtime.forward(tokens[29:], cache)[0])
    np.testing.assert_allclose(np.concatenate(parts), full, atol=1e-5, rtol=0)
    assert cache.seen == 40 and cache.layers[0].keys.shape[2] == bit_model.config.window - 1


def test_batched_rows_equal_single_rows(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    """Right padding never changes the logits of the real tokens (what RuntimeLM relies on)."""
    runtime = make_runtime(bit_model, tmp_path)
    a, b = ids(30, seed=3), ids(19, seed=4)
    batch = np.zeros((2, 30), dtype=np.int64)
    batch[0], batch[1, :19] = a, b
    logits, _ = runtime.forward(batch)
    np.testing.assert_allclose(logits[0], runtime.forward(a)[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(logits[1, :19], runtime.forward(b)[0], atol=1e-5, rtol=0)


def test_greedy_generation_matches_pytorch(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    runtime = make_runtime(bit_model, tmp_path)
    prompt = ids(12, seed=5)
    assert greedy_generate(runtime, prompt, 20) == torch_greedy(bit_model)(prompt, 20)


def test_think_mode_feeds_the_cue_after_the_thought(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    """think_generate equals greedy decoding of body <think> thought </think> cue answer, step by step."""
    runtime = make_runtime(bit_model, tmp_path)
    body = ids(12, seed=6)
    think = int(np.argmax(runtime.forward(body)[0][-1]))  # whatever the model picks first acts as <think>
    end_think, cue = ids(1, seed=7)[0], ids(2, seed=8)
    tokens = ThinkTokens(think, end_think, cue, None)
    thought, answer = think_generate(runtime, body, tokens, max_thought=5, max_answer=4)
    expected = greedy_generate(runtime, [*body, think], 5)
    stop = expected.index(end_think) if end_think in expected else len(expected)
    assert thought == expected[:stop]
    assert answer == greedy_generate(runtime, [*body, think, *thought, end_think, *cue], 4)
    other = ThinkTokens(think + 1 if think + 1 < bit_model.config.vocab_size else think - 1, end_think, cue, None)
    no_thought, direct = think_generate(runtime, body, other, max_thought=5, max_answer=4)
    assert no_thought == [] and direct == greedy_generate(runtime, [*body, *cue], 4)
    openers = [3, 9, 27]  # think mode's grammar: the thought opens with one of these (the strategy markers)
    opened, _ = think_generate(runtime, body, ThinkTokens(think, end_think, cue, None, openers), 5, 4)
    first = runtime.forward([*body, think])[0][-1]
    assert opened[0] == openers[int(np.argmax(first[openers]))]
    assert opened == greedy_generate(runtime, [*body, think], 5, allowed=lambda prev: openers if prev == think
                                     else None)[: len(opened)]
    greeting = greedy_generate(runtime, body, 3)  # a thought opened after a two-token preamble
    late, _ = think_generate(runtime, body, ThinkTokens(greeting[2], end_think, cue, None), 5, 4)
    expected = greedy_generate(runtime, [*body, *greeting], 5)
    assert late == expected[: expected.index(end_think) if end_think in expected else 5]


def test_the_runtime_knows_the_packages_strategy_markers() -> None:
    from agent_forge.export.runtime.bundle import PREAMBLE_TOKENS as bundle_preamble
    from agent_forge.export.runtime.bundle import REASONING_MARKERS, best_token
    from agent_forge.reasoning.strategies import STRATEGIES
    from agent_forge.reasoning.think_mode import PREAMBLE_TOKENS

    assert tuple(s.token for s in STRATEGIES) == REASONING_MARKERS
    assert bundle_preamble == PREAMBLE_TOKENS
    logits = np.array([0.5, 2.0, 1.0, -1.0])
    assert best_token(logits) == 1 and best_token(logits, [0, 2, 3]) == 2


def test_fp16_storage_stays_close(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    """The bundle default keeps non-ternary tensors in fp16: the error is small, not zero."""
    runtime = make_runtime(bit_model, tmp_path, float_dtype="float16", fmt="tq1_0")
    tokens = ids(32, seed=6)
    diff = np.abs(runtime.forward(tokens)[0] - _torch_logits(bit_model, tokens)).max()
    assert 0.0 < diff < 0.05


def test_runtime_rejects_bad_input(bit_model, make_runtime, tmp_path: Path) -> None:
    runtime = make_runtime(bit_model, tmp_path)
    with pytest.raises(ValueError, match="token ids"):
        runtime.forward([0, 512])
    with pytest.raises(ValueError, match="L >= 1"):
        runtime.forward([])


def test_runtime_package_imports_no_torch(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    """Loaded as a top-level package (as in a bundle), a forward pass pulls in numpy only."""
    make_runtime(bit_model, tmp_path)
    bit_model.config.to_json_file(str(tmp_path / "config.json"), use_diff=False)
    code = (
        "import sys, json, numpy as np; sys.path.insert(0, sys.argv[1]);"
        "from runtime import ForgeRuntimeModel, RuntimeConfig, load_weights;"
        "cfg = RuntimeConfig.from_dict(json.load(open(sys.argv[2] + '/config.json')));"
        "m = ForgeRuntimeModel(load_weights(sys.argv[2] + '/model.tq2_0.safetensors'), cfg);"
        "print(m.forward([5, 6, 7])[0].shape);"
        "bad = [n for n in ('torch', 'transformers', 'agent_forge', 'safetensors') if n in sys.modules];"
        "print('loaded:', bad)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(EXPORT_DIR), str(tmp_path)], capture_output=True,
                         text=True, check=True)
    assert "(3, 512)" in out.stdout and "loaded: []" in out.stdout


def test_the_engine_decodes_the_runtime_through_its_cache(bit_model, make_runtime, ids, tmp_path: Path) -> None:
    """RuntimeLM's cached face lets the engine drive a bundle: greedy equals the runtime's own loop, and an
    inserted token continues from a copied cache exactly as a fresh decode of the longer prompt does."""
    from agent_forge.engine import decode
    from agent_forge.export.evaluation import RuntimeLM

    runtime = make_runtime(bit_model, tmp_path)
    lm, prompt = RuntimeLM(runtime), ids(12, seed=9)
    assert decode(lm, [prompt], 15, eos_id=-1)[0].tokens == greedy_generate(runtime, prompt, 15)
    inserted = [7, 8]

    def hook(row: int, tokens: list[int], calls: int) -> list[int] | None:
        return inserted if len(tokens) == 3 and calls == 0 else None

    with_insert = decode(lm, [prompt], 8, eos_id=-1, hook=hook)[0].tokens
    head = with_insert[:5]
    assert head[3:] == inserted
    assert with_insert[5:] == greedy_generate(runtime, [*prompt, *head], 5)
    other_row_inserts = lambda row, tokens, calls: [7] if row == 1 and calls == 0 else None  # noqa: E731
    pair = decode(lm, [prompt, ids(12, seed=10)], 6, eos_id=-1, hook=other_row_inserts)
    assert pair[0].tokens == greedy_generate(runtime, prompt, 6)  # the other row's insert leaves it alone
    rule = lambda previous: [5, 6] if previous == with_insert[1] else None  # noqa: E731
    confined = decode(lm, [prompt], 8, eos_id=-1, allowed=lambda row, previous: rule(previous))[0].tokens
    assert confined == greedy_generate(runtime, prompt, 8, allowed=rule) and confined[2] in (5, 6)
    with pytest.raises(ValueError, match="unpadded"):  # 12 and 4 tokens: one memory-chunk group, padded
        decode(lm, [prompt, prompt[:4]], 2)
