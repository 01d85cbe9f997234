"""ForgeForCausalLM: the D10 guards, the loss parts, and the Hugging Face integration."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from model_builders import build_model, random_ids
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache

from agent_forge.model import ForgeCache, ForgeConfig, ForgeForCausalLM
from agent_forge.model.attention import window_max_logit

LONG = 45  # longer than the window (16) and several memory chunks (8)


@pytest.mark.parametrize("training", [False, True])
def test_changing_a_token_never_changes_earlier_outputs(training: bool) -> None:
    model = build_model(seed=1).train(training)
    ids = random_ids(2, LONG)
    for t in (3, 16, 24, 40):
        changed = ids.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 7) % 512
        with torch.no_grad():
            base, other = model(ids).logits, model(changed).logits
        torch.testing.assert_close(other[:, : t + 1], base[:, : t + 1], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(other[:, t + 1 :], base[:, t + 1 :])


def test_labels_are_shifted_inside_the_model() -> None:
    model = build_model(seed=2, trm_t_max=1, act_loss_weight=0.0, gate_entropy_reg=0.0).eval()
    ids = random_ids(2, 20)
    labels = ids.clone()
    labels[:, :4] = -100
    with torch.no_grad():
        out = model(ids, labels=labels)
        logits = model(ids).logits
    expected = F.cross_entropy(logits[:, :-1].reshape(-1, 512), labels[:, 1:].reshape(-1), ignore_index=-100)
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.lm_loss, expected)
    unshifted = F.cross_entropy(logits.reshape(-1, 512), labels.reshape(-1), ignore_index=-100)
    assert not torch.isclose(out.loss, unshifted)


def test_loss_is_the_documented_sum_of_its_parts() -> None:
    model = build_model(seed=3, step_weights=[1, 2, 5], act_loss_weight=0.3, gate_entropy_reg=0.01).eval()
    ids = random_ids(2, 30)
    with torch.no_grad():
        out = model(ids, labels=ids)
    weights = torch.tensor([1, 2, 5]) / 8
    expected = (weights * out.step_losses).sum() + 0.3 * out.act_loss - 0.01 * out.gate_entropy
    torch.testing.assert_close(out.loss, expected)
    assert out.step_losses.shape == (3,) and out.lm_loss == out.step_losses[-1]
    assert 1.0 <= out.mean_halt_step.item() <= 3.0
    assert 0.0 < out.gate_entropy.item() <= 0.6932


def test_every_trainable_parameter_gets_a_gradient_in_one_step() -> None:
    model = build_model(seed=4).train()
    ids = random_ids(4, LONG)
    model(ids, labels=ids).loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing, f"no gradient for {missing}"
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert {"act_head.proj.weight", "act_head.proj.bias", "trm.z_init"} <= names


def test_training_forward_moves_the_act_teacher_and_eval_does_not() -> None:
    model = build_model(seed=5).train()
    with torch.no_grad():
        model.act_head.proj.weight.add_(0.5)
    before = model.act_head.teacher_weight.clone()
    ids = random_ids(2, 12)
    model.eval()(ids, labels=ids)
    assert torch.equal(model.act_head.teacher_weight, before)
    model.train()(ids, labels=ids)
    torch.testing.assert_close(
        model.act_head.teacher_weight, 0.98 * before + 0.02 * model.act_head.proj.weight
    )


def test_memory_is_per_sequence_never_carried_across_batches() -> None:
    model = build_model(seed=6).eval()
    a, b = random_ids(2, LONG, seed=1), random_ids(2, LONG, seed=2)
    with torch.no_grad():
        a_first = model(a).logits
        b_then = model(b).logits
        b_first = build_model(seed=6).eval()(b).logits
        a_then = model(a).logits
        alone = model(a[1:]).logits
    torch.testing.assert_close(a_first, a_then)
    torch.testing.assert_close(b_first, b_then)
    torch.testing.assert_close(alone[0], a_first[1], atol=1e-5, rtol=1e-5)


def test_batch_order_and_batch_companions_do_not_matter() -> None:
    """Memory and attention are per sequence: permuting the batch permutes the outputs, losses included."""
    model = build_model(seed=6).train()
    ids = random_ids(4, LONG, seed=3)
    perm = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        base, permuted = model(ids), model(ids[perm])
        torch.testing.assert_close(permuted.logits, base.logits[perm], atol=1e-5, rtol=1e-5)
        first, second = model(ids[:2], labels=ids[:2]), model(ids[2:], labels=ids[2:])
        swapped_second, swapped_first = model(ids[2:], labels=ids[2:]), model(ids[:2], labels=ids[:2])
    torch.testing.assert_close(swapped_first.step_losses, first.step_losses)
    torch.testing.assert_close(swapped_second.step_losses, second.step_losses)


def test_save_and_load_through_auto_classes_gives_identical_logits(tmp_path) -> None:
    model = build_model(seed=7, act_threshold=0.7).eval()
    ids = random_ids(2, LONG)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "agent_forge_trm"
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, ForgeForCausalLM) and loaded.config.act_threshold == 0.7
    assert loaded.lm_head.weight.data_ptr() == loaded.model.embed_tokens.weight.data_ptr()
    with torch.no_grad():
        assert torch.equal(loaded(ids).logits, model(ids).logits)
    for name, buffer in model.act_head.named_buffers():
        assert torch.equal(dict(loaded.act_head.named_buffers())[name], buffer)


def recompute_greedy(model: ForgeForCausalLM, ids: torch.Tensor, steps: int) -> torch.Tensor:
    with torch.no_grad():
        for _ in range(steps):
            nxt = model(ids, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat((ids, nxt), dim=1)
    return ids


def test_cached_greedy_generation_equals_recomputing_the_whole_sequence() -> None:
    model = build_model(seed=8).eval()
    prompt = random_ids(2, 11)
    seen = []
    model.model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[1]))
    generated = model.generate(prompt, max_new_tokens=30, do_sample=False, eos_token_id=None)
    assert seen == [11] + [1] * 29, "the prefix must not be recomputed"
    assert torch.equal(generated, recompute_greedy(model, prompt, 30))


def test_cache_steps_match_the_full_forward_logits() -> None:
    model = build_model(seed=9).eval()
    ids = random_ids(2, LONG)
    with torch.no_grad():
        full = model(ids).logits
        out = model(ids[:, :13], use_cache=True)
        pieces, cache = [out.logits], out.cache
        for start, end in [(13, 14), (14, 22), (22, 23), (23, LONG)]:
            out = model(ids[:, start:end], cache=cache)
            pieces.append(out.logits)
    assert isinstance(cache, ForgeCache) and cache.get_seq_length() == LONG
    assert cache.states[0].keys.shape[2] == model.config.window - 1
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


def test_sampling_generation_is_reproducible_with_a_seed() -> None:
    model = build_model(seed=10).eval()
    prompt = random_ids(3, 5)
    torch.manual_seed(0)
    first = model.generate(prompt, max_new_tokens=12, do_sample=True, top_k=20, eos_token_id=None)
    torch.manual_seed(0)
    second = model.generate(prompt, max_new_tokens=12, do_sample=True, top_k=20, eos_token_id=None)
    assert first.shape == (3, 17) and torch.equal(first, second)
    assert not torch.equal(
        first, model.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None)
    )


def test_cached_sampling_equals_sampling_with_recomputation() -> None:
    model = build_model(seed=10).eval()
    prompt = random_ids(2, 7)
    kwargs = dict(max_new_tokens=20, do_sample=True, top_k=50, temperature=1.3, eos_token_id=None)
    torch.manual_seed(3)
    cached = model.generate(prompt, use_cache=True, **kwargs)
    torch.manual_seed(3)
    recomputed = model.generate(prompt, use_cache=False, **kwargs)
    assert torch.equal(cached, recomputed)


def test_left_padded_batches_generate_like_unbatched_recomputation() -> None:
    model = build_model(seed=11).eval()
    ids = random_ids(2, 12)
    mask = torch.ones_like(ids)
    ids[1, :4], mask[1, :4] = 0, 0
    generated = model.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False, eos_token_id=None)
    seq, full_mask = ids, mask
    with torch.no_grad():
        for _ in range(8):
            nxt = model(seq, attention_mask=full_mask, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq, full_mask = torch.cat((seq, nxt), 1), torch.cat((full_mask, torch.ones_like(nxt)), 1)
    assert torch.equal(generated, seq)


def test_padding_tokens_do_not_influence_real_positions() -> None:
    model = build_model(seed=12).eval()
    ids = random_ids(2, LONG)
    mask = torch.ones_like(ids)
    mask[0, :5] = 0
    other = ids.clone()
    other[0, :5] = 9
    with torch.no_grad():
        a, b = model(ids, attention_mask=mask).logits, model(other, attention_mask=mask).logits
    torch.testing.assert_close(a[0, 5:], b[0, 5:], atol=1e-5, rtol=1e-5)


def test_a_foreign_empty_cache_is_replaced_and_a_filled_one_refused() -> None:
    model = build_model(seed=13).eval()
    ids = random_ids(1, 6)
    with torch.no_grad():
        out = model(ids, cache=DynamicCache())
        assert isinstance(out.cache, ForgeCache)
        filled = DynamicCache()
        filled.update(torch.zeros(1, 4, 3, 16), torch.zeros(1, 4, 3, 16), 0)
        with pytest.raises(TypeError, match="ForgeCache"):
            model(ids, cache=filled)


def test_bf16_autocast_forward_and_backward_work() -> None:
    model = build_model(seed=14).train()
    ids = random_ids(2, LONG)
    with torch.no_grad():
        reference = model(ids, labels=ids).step_losses
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, labels=ids)
    out.loss.backward()
    assert torch.isfinite(out.loss) and all(torch.isfinite(p.grad).all() for p in model.parameters())
    torch.testing.assert_close(out.step_losses, reference, atol=0.05, rtol=0.02)


def test_logits_to_keep_gives_the_last_positions_only() -> None:
    model = build_model(seed=15).eval()
    ids = random_ids(2, 20)
    with torch.no_grad():
        full, last = model(ids).logits, model(ids, logits_to_keep=1).logits
    assert last.shape == (2, 1, 512)
    torch.testing.assert_close(last[:, 0], full[:, -1], atol=1e-5, rtol=1e-5)


def test_static_act_gives_the_same_logits_as_early_exit() -> None:
    model = build_model(seed=16).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.act_head.proj.weight, std=0.5)
    ids = random_ids(2, 30)
    with torch.no_grad():
        early = model(ids)
        model.config.static_act = True
        static = model(ids)
    assert torch.equal(early.halt_steps, static.halt_steps)
    torch.testing.assert_close(static.logits, early.logits, atol=1e-5, rtol=1e-5)


def test_track_max_logit_reports_each_layers_largest_logit() -> None:
    model = build_model(seed=17).train()
    ids = random_ids(2, LONG)
    model(ids, labels=ids)
    assert all(torch.all(a.max_logit == 0) for a in model.attention_modules())
    model.track_max_logit = True
    captured = []
    model.model.layers[1].attn_norm.register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    model(ids, labels=ids)
    attn = model.attention_modules()[1]
    q, k, _ = attn.project(captured[0], torch.arange(LONG))
    torch.testing.assert_close(attn.max_logit, window_max_logit(q, k, attn.window))
    assert len(model.attention_modules()) == 2


def test_set_non_shape_changes_specialist_values_only() -> None:
    model = build_model(seed=18).eval()
    ids = random_ids(1, LONG)
    with torch.no_grad():
        before = model(ids).logits
        model.set_non_shape(surprise_weight=0.9, novelty_weight=0.1, mem_capacity=256, act_threshold=0.9)
        after = model(ids).logits
    assert model.model.layers[0].memory.const.eta == pytest.approx(0.1)
    assert not torch.allclose(before, after)
    with pytest.raises(ValueError, match="non-shape"):
        model.set_non_shape(hidden_size=32)
    with pytest.raises(ValueError, match="novelty_weight"):
        model.set_non_shape(novelty_weight=1.2)


def test_gradient_checkpointing_gives_the_same_gradients() -> None:
    ids = random_ids(2, LONG)
    plain, checkpointed = build_model(seed=19).train(), build_model(seed=19).train()
    checkpointed.activation_checkpointing_enable()
    plain(ids, labels=ids).loss.backward()
    checkpointed(ids, labels=ids).loss.backward()
    for (name, a), b in zip(plain.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, msg=name)


def test_beam_search_reorders_the_cache() -> None:
    model = build_model(seed=20).eval()
    prompt = random_ids(2, 9)
    cached = model.generate(prompt, max_new_tokens=8, num_beams=3, do_sample=False, eos_token_id=None)
    uncached = model.generate(
        prompt, max_new_tokens=8, num_beams=3, do_sample=False, eos_token_id=None, use_cache=False
    )
    assert torch.equal(cached, uncached)


def test_long_sequences_never_build_an_n_by_n_attention_mask(monkeypatch) -> None:
    """O(n*w): in a whole-model pass (training and inference) no SDPA call sees more than 2*window keys."""
    seen = []
    real = F.scaled_dot_product_attention

    def spy(q, k, v, attn_mask=None, **kwargs):
        seen.append(k.shape[-2] if attn_mask is None else max(k.shape[-2], attn_mask.shape[-1]))
        return real(q, k, v, attn_mask=attn_mask, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    model = build_model(seed=21)
    ids = random_ids(1, 300)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0
    model.train()(ids, labels=ids).loss.backward()
    with torch.no_grad():
        model.eval()(ids, attention_mask=mask)
    assert seen and max(seen) <= 2 * model.config.window


def test_one_spec25m_training_step_runs_on_cpu() -> None:
    torch.manual_seed(0)
    model = ForgeForCausalLM(ForgeConfig.from_shape("spec25m")).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids = torch.randint(3, 32768, (1, 64), generator=torch.Generator().manual_seed(0))
    out = model(ids, labels=ids)
    out.loss.backward()
    optimizer.step()
    assert out.step_losses.shape == (3,) and torch.isfinite(out.loss)
    assert abs(out.lm_loss.item() - math.log(32768)) < 1.0, "an untrained model starts near ln(vocab)"
    with torch.no_grad():
        assert model(ids, labels=ids).lm_loss < out.lm_loss


def test_training_forward_returns_logits_only_when_asked() -> None:
    """A training step never needs the (tokens x vocab) logits; eval with labels and return_logits do."""
    model = build_model(seed=22).train()
    ids = random_ids(2, 20)
    assert model(ids, labels=ids).logits is None
    kept = model(ids, labels=ids, return_logits=True)
    with torch.no_grad():
        masked = model(ids).logits  # training mode: every step, halting by masks
    torch.testing.assert_close(kept.logits, masked, atol=1e-5, rtol=1e-5)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, labels=ids).logits, model(ids).logits, atol=1e-5, rtol=1e-5)


class SubclassedHead(torch.nn.Linear):
    """Any head that is not a plain nn.Linear (BitLinear in Phase 4) takes the autograd CE path."""


def test_a_subclassed_head_gives_the_same_loss_gradients_and_logits() -> None:
    fused, plain = build_model(seed=23).train(), build_model(seed=23).train()
    plain.lm_head = SubclassedHead(64, 512, bias=False)
    plain.lm_head.weight = plain.model.embed_tokens.weight
    ids = random_ids(2, 20)
    a, b = fused(ids, labels=ids, return_logits=True), plain(ids, labels=ids, return_logits=True)
    torch.testing.assert_close(b.loss, a.loss)
    torch.testing.assert_close(b.logits, a.logits, atol=1e-5, rtol=1e-5)
    a.loss.backward()
    b.loss.backward()
    torch.testing.assert_close(plain.model.embed_tokens.weight.grad, fused.model.embed_tokens.weight.grad)
    assert plain(ids, labels=ids).logits is None


def test_sparse_labels_run_the_recursion_on_scored_positions_with_the_same_loss_and_gradients() -> None:
    ids = random_ids(2, 32)
    labels = torch.full_like(ids, -100)
    labels[:, 20:26] = ids[:, 20:26]  # a few answer tokens: below the sparse share
    dense, sparse = build_model(3), build_model(3)
    dense.eval(), sparse.eval()
    out_dense = dense(input_ids=ids, labels=labels, return_logits=True)  # logits wanted: the dense path
    out_sparse = sparse(input_ids=ids, labels=labels, return_logits=False)
    assert out_sparse.halt_steps.shape == (1, 128)  # 10 scored positions, padded to one bucket
    for name in ("loss", "lm_loss", "act_loss"):
        assert torch.allclose(getattr(out_dense, name), getattr(out_sparse, name), atol=1e-5), name
    out_dense.loss.backward()
    out_sparse.loss.backward()
    for (name, a), b in zip(dense.named_parameters(), sparse.parameters(), strict=True):
        if a.grad is not None:
            assert torch.allclose(a.grad, b.grad, atol=1e-5), name
