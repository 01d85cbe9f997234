"""`ForgeForCausalLM`: the TRM x Titans-MAG model as a Hugging Face causal LM.

backbone (embedding, MAG layers, norm) -> features x -> TRM recursion with ACT -> logits at each
position's halting step. `forward(labels=...)` returns the training objective: weighted deep-supervision
CE over the recursion steps + act_loss_weight * ACT loss - gate_entropy_reg * gate entropy. Labels follow
HF: position i predicts labels[i+1], -100 is ignored.

With labels, the loss goes through the fused head cross-entropy (`head_loss`), which never stores logits;
the returned `logits` (halting step) are then a detached by-product, returned in eval mode and, in
training mode, only with `return_logits=True`: a training step has no use for them, and at batch 4 x 2048
with vocabulary 32768 they alone are a gigabyte. Call without labels for differentiable logits. In
training mode with labels the ACT teacher takes one EMA step per forward (like BatchNorm statistics), so
no training loop can forget it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as hf_init
from transformers.modeling_outputs import CausalLMOutputWithPast

from agent_forge.model.act import ACTHead, act_loss, act_targets, halting_probability, halting_steps
from agent_forge.model.attention import SlidingWindowAttention
from agent_forge.model.backbone import BackboneOutput, ForgeBackbone
from agent_forge.model.band_attention import exporting as _exporting
from agent_forge.model.block import LayerState
from agent_forge.model.cache import ForgeCache
from agent_forge.model.config import ForgeConfig
from agent_forge.model.head_loss import head_cross_entropy
from agent_forge.model.memory import MemoryConstants, MemoryState
from agent_forge.model.params import count_param_families
from agent_forge.model.streams import PrefixState, StreamCache, StreamOutput, backbone_streams, branch_streams
from agent_forge.model.trm import (
    HaltedOutput,
    StepOutputs,
    TRMCore,
    run_all_steps,
    run_early_exit,
    run_masked,
)
from agent_forge.quant.bitlinear import make_ternary

SPARSE_TARGET_SHARE = 0.5  # below this share of scored positions, recursion and head run on those alone
SPARSE_BUCKET = 128  # the scored positions are padded to a multiple of this (see scored_positions)

NON_SHAPE_FIELDS = frozenset(
    {
        "act_threshold",
        "act_ema",
        "act_loss_weight",
        "act_step_cost",
        "mem_capacity",
        "mem_decay",
        "mem_lr",
        "surprise_weight",
        "novelty_weight",
        "gate_entropy_reg",
        "step_weights",
        "static_act",
    }
)


@dataclass
class ForgeOutput(CausalLMOutputWithPast):
    """HF causal-LM output plus the parts of the objective and the halting statistics."""

    # the decoding cache under our own name: transformers 5.x releases name the parent's field differently
    # (5.17 has no `cache`, 5.25 has); declared here, every 5.x release takes ``cache=``
    cache: Any = None
    lm_loss: torch.Tensor | None = None
    step_losses: torch.Tensor | None = None
    act_loss: torch.Tensor | None = None
    gate_entropy: torch.Tensor | None = None
    mean_halt_step: torch.Tensor | None = None
    halt_steps: torch.Tensor | None = None


class ForgePreTrainedModel(PreTrainedModel):
    config_class = ForgeConfig
    base_model_prefix = "model"
    _no_split_modules = ["MAGBlock"]
    supports_gradient_checkpointing = True

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, TRMCore):
            hf_init.normal_(module.z_init, std=float(self.config.initializer_range))
        elif isinstance(module, ACTHead):
            hf_init.copy_(module.teacher_norm, module.norm.weight)
            hf_init.copy_(module.teacher_weight, module.proj.weight)
            hf_init.copy_(module.teacher_bias, module.proj.bias)
        elif isinstance(module, SlidingWindowAttention):
            hf_init.zeros_(module.max_logit)


class ForgeForCausalLM(ForgePreTrainedModel, GenerationMixin):
    """TRM x Titans-MAG causal LM; see the package docstring for the parts."""

    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: ForgeConfig) -> None:
        super().__init__(config)
        self.model = ForgeBackbone(config)
        self.trm = TRMCore(config)
        self.act_head = ACTHead(config)
        self.norm_out = nn.RMSNorm(config.hidden_size, eps=float(config.rms_norm_eps))
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()
        if config.bitlinear:  # a ternary model (Phases 4-8) is built with its BitLinear layers, never as float
            make_ternary(self, config.bitlinear)

    @classmethod
    def _supports_default_dynamic_cache(cls) -> bool:
        """generate() must not build a DynamicCache: forward creates its own ForgeCache."""
        return False

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, value: nn.Linear) -> None:
        self.lm_head = value

    # ---- helpers exposed to other packages -------------------------------------------------------------

    def attention_modules(self) -> list[SlidingWindowAttention]:
        """The attention modules, in layer order, for QK-clip."""
        return [layer.attn for layer in self.model.layers]

    @property
    def track_max_logit(self) -> bool:
        return any(attn.track_max_logit for attn in self.attention_modules())

    @track_max_logit.setter
    def track_max_logit(self, value: bool) -> None:
        for attn in self.attention_modules():
            attn.track_max_logit = bool(value)

    def param_breakdown(self) -> dict[str, int]:
        """Exact parameter count per family; the values sum to the model's parameter count."""
        return count_param_families(self)

    def set_non_shape(self, **values: Any) -> None:
        """Change non-shape hyperparameters (a specialist's ACT threshold, memory weights, ...) in place."""
        unknown = set(values) - NON_SHAPE_FIELDS
        if unknown:
            raise ValueError(f"not a non-shape field: {sorted(unknown)}")
        checked = ForgeConfig(**{**self.config.to_dict(), **values})
        for name in values:
            setattr(self.config, name, getattr(checked, name))
        const = MemoryConstants.from_config(self.config)
        for layer in self.model.layers:
            layer.memory.set_constants(const)

    # ---- streams for Quiet-STaR (see agent_forge.model.streams) --------------------------------------

    def prefix_state(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> PrefixState:
        """One pass over the real sequences, keeping what thought streams branch from (and its logits)."""
        key_valid = self._key_valid(attention_mask, input_ids.shape[1], None)
        features = self.model(input_ids, 0, key_valid, None)
        halted = self.recurse(features.hidden)
        return PrefixState(
            keys=[s.keys for s in features.states],
            values=[s.values for s in features.states],
            boundaries=features.boundaries,
            key_valid=key_valid,
            logits=halted.logits,
            hidden=halted.hidden,
            halt_steps=halted.halt_step,
            chunk=self.config.mem_chunk,
            window=self.config.window,
        )

    def branch(self, state: PrefixState, batch_index: torch.Tensor, anchor_pos: torch.Tensor) -> StreamCache:
        """Streams anchored at anchor_pos[s] of sequence batch_index[s]."""
        return branch_streams(state, batch_index, anchor_pos)

    def stream_forward(self, tokens: torch.Tensor, cache: StreamCache) -> StreamOutput:
        """Feed tokens (S, L) to every stream: logits (S, L, V), normed hidden (S, L, d), grown cache.

        Thought tokens read the memory as it was at their anchor and write none; see `streams`.
        """
        x, cache = backbone_streams(list(self.model.layers), self.model.embed_tokens(tokens), cache)
        halted = self.recurse(self.model.norm(x))
        return StreamOutput(halted.logits, halted.hidden, cache, halted.halt_step)

    # ---- forward -----------------------------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        cache: ForgeCache | None = None,
        past_key_values: ForgeCache | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int = 0,
        return_logits: bool | None = None,
        logits_mask: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> ForgeOutput:
        """Logits at each position's halting step; with labels, the loss and its parts (and the logits
        unless `return_logits` is False; it defaults to True in eval mode and False in training mode).

        `logits_mask` (bool, B x L) runs the recursion and the head only where it is True and returns
        those positions' logits as (N, V) in row-major order: the recursion is position-wise, so they equal
        the full pass's logits there. Scoring a few answer tokens after a long prompt then costs the
        backbone pass alone."""
        cache = self._prepare_cache(cache if cache is not None else past_key_values, use_cache, labels)
        start = cache.seen_tokens if cache is not None else 0
        key_valid = self._key_valid(attention_mask, input_ids.shape[1], cache)
        past = cache.states if cache is not None and start else None
        features = self.model(input_ids, start, key_valid, past, with_entropy=labels is not None)
        if cache is not None:
            self._store(cache, features, key_valid, input_ids.shape[1])
        if labels is not None:
            keep = (not self.training) if return_logits is None else return_logits
            return self._training_output(features, labels, attention_mask, cache, keep)
        if logits_mask is not None:
            x, mask = features.hidden[logits_mask.to(torch.bool)], None
        else:
            x = features.hidden[:, -logits_to_keep:] if logits_to_keep else features.hidden
            mask = None if attention_mask is None else attention_mask[:, -x.shape[1] :]
        halted = self.recurse(x)
        return ForgeOutput(
            logits=halted.logits,
            cache=cache,
            halt_steps=halted.halt_step,
            mean_halt_step=mean_steps(halted.halt_step, mask),
        )

    def recurse(self, x: torch.Tensor) -> HaltedOutput:
        """TRM recursion with halting; early exit at inference, masks in training or under export."""
        threshold = float(self.config.act_threshold)
        t_max = self.config.trm_t_max
        if self.training or self.config.static_act or _exporting():
            return run_masked(self.trm, self.act_head, x, t_max, threshold, self.norm_out, self.lm_head)
        return run_early_exit(self.trm, self.act_head, x, t_max, threshold, self.norm_out, self.lm_head)

    def _training_output(
        self,
        features: BackboneOutput,
        labels: torch.Tensor,
        attention_mask: torch.Tensor | None,
        cache: ForgeCache | None,
        return_logits: bool,
    ) -> ForgeOutput:
        hidden, targets, mask = features.hidden, F.pad(labels[:, 1:], (0, 1), value=-100), attention_mask
        scored = targets != -100
        if not return_logits and float(scored.float().mean()) < SPARSE_TARGET_SHARE:
            # The recursion and the head are position-wise: with few scored positions (answer-only
            # labels), run them there alone; the result is the same loss at a fraction of the cost.
            hidden, targets, mask = scored_positions(hidden, targets, scored)
        steps = run_all_steps(self.trm, self.act_head, hidden, self.config.trm_t_max, self.norm_out)
        probs = [halting_probability(q) for q in steps.act_logits]
        halt = halting_steps(probs, float(self.config.act_threshold))
        logits = None
        if return_logits:
            shape = (*halt.shape, self.config.vocab_size)
            logits = hidden.new_empty(shape, dtype=_head_dtype(hidden))
        flat = None if logits is None else logits.view(-1, logits.shape[-1])
        step_losses, act = self._objective_parts(steps, targets, halt, flat)
        weights = torch.tensor(self.config.resolved_step_weights, device=step_losses.device)
        entropy = features.gate_entropy
        loss = (weights * step_losses).sum() + float(self.config.act_loss_weight) * act
        loss = loss - float(self.config.gate_entropy_reg) * entropy
        return ForgeOutput(
            loss=loss,
            logits=logits,
            cache=cache,
            lm_loss=step_losses[-1],
            step_losses=step_losses,
            act_loss=act,
            gate_entropy=entropy.detach(),
            halt_steps=halt,
            mean_halt_step=mean_steps(halt, mask),
        )

    def _objective_parts(
        self, steps: StepOutputs, targets: torch.Tensor, halt: torch.Tensor, out_logits: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-step CE and the ACT loss; fills out_logits (when given) with each position's halting-step
        logits.

        ``targets`` are the labels already shifted left (position i is scored against label i+1, -100
        ignored). In training mode the ACT teacher takes its EMA step before it scores the next steps.
        """
        valid = targets != -100
        count = valid.sum().clamp_min(1)
        losses, row_losses = [], []
        for t, hidden in enumerate(steps.hidden):
            total, rows = self._head_loss(hidden, targets, out_logits, halt == t)
            losses.append(total / count)
            row_losses.append(rows)
        if self.training:
            self.act_head.update_teacher(float(self.config.act_ema))
        with torch.no_grad():
            teacher = [halting_probability(self.act_head.teacher(z)) for z in steps.latents]
        step_cost = float(self.config.act_step_cost)
        act = act_loss(steps.act_logits, act_targets(row_losses, teacher, step_cost), valid.float())
        return torch.stack(losses), act

    def _head_loss(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        out_logits: torch.Tensor | None,
        rows: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed CE and per-position CE (detached) of one step; the fused path needs a plain nn.Linear head."""
        if type(self.lm_head) is nn.Linear:
            return head_cross_entropy(hidden, self.lm_head.weight, targets, out_logits, rows)
        logits = self.lm_head(hidden)
        flat = logits.reshape(-1, logits.shape[-1])
        row_loss = F.cross_entropy(flat.float(), targets.reshape(-1), ignore_index=-100, reduction="none")
        with torch.no_grad():
            if out_logits is not None:
                keep = rows.reshape(-1).nonzero().squeeze(1)
                out_logits.index_copy_(0, keep, flat.index_select(0, keep).to(out_logits.dtype))
        return row_loss.sum(), row_loss.detach().view(targets.shape)

    def _prepare_cache(
        self, cache: ForgeCache | None, use_cache: bool | None, labels: torch.Tensor | None
    ) -> ForgeCache | None:
        if cache is not None and not isinstance(cache, ForgeCache):
            if cache.get_seq_length() != 0:
                raise TypeError(f"ForgeForCausalLM needs a ForgeCache, got a filled {type(cache).__name__}")
            cache = None
            use_cache = True
        if cache is not None:
            return cache
        if use_cache is None:
            use_cache = bool(self.config.use_cache) and not self.training and labels is None
        return ForgeCache(self.config.num_layers) if use_cache else None

    def _key_valid(
        self, attention_mask: torch.Tensor | None, new_tokens: int, cache: ForgeCache | None
    ) -> torch.Tensor | None:
        """(B, cached+new) key validity, or None when nothing is padding (the fast path)."""
        new = None if attention_mask is None else attention_mask[:, -new_tokens:].bool()
        if new is not None and bool(new.all()):
            new = None
        cached = cache.states[0] if cache is not None and cache.seen_tokens else None
        past_valid = cache.key_valid if cached is not None else None
        if new is None and past_valid is None:
            return None
        batch = (attention_mask if attention_mask is not None else past_valid).shape[0]
        device = (attention_mask if attention_mask is not None else past_valid).device
        if past_valid is None:
            past_valid = torch.ones(
                batch, 0 if cached is None else cached.keys.shape[2], dtype=torch.bool, device=device
            )
        if new is None:
            new = torch.ones(batch, new_tokens, dtype=torch.bool, device=device)
        return torch.cat((past_valid, new), dim=1)

    def _store(
        self, cache: ForgeCache, features: BackboneOutput, key_valid: torch.Tensor | None, new_tokens: int
    ) -> None:
        """Keep only the last window-1 keys (cloned, so the full-sequence tensors can be freed)."""
        keep = self.config.window - 1
        states = []
        for state in features.states:
            start = max(state.keys.shape[2] - keep, 0)
            keys, values = state.keys[:, :, start:], state.values[:, :, start:]
            if start:
                keys, values = keys.clone(), values.clone()
            memory = MemoryState(*(t.detach() for t in state.memory.tensors()))
            states.append(LayerState(keys.detach(), values.detach(), memory))
        valid = None if key_valid is None else key_valid[:, max(key_valid.shape[1] - keep, 0) :]
        cache.store(states, valid, new_tokens)


def scored_positions(hidden: torch.Tensor, targets: torch.Tensor, scored: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor, None]:
    """The scored positions as one (1, N', d) row with their targets, N' = N rounded up to a multiple of
    SPARSE_BUCKET with ignored filler rows: batches then share a few shapes, which keeps the CPU's
    matmul kernels and the allocator's blocks reusable instead of new ones for every N."""
    index = scored.flatten().nonzero().squeeze(1)
    filler = (-index.numel()) % SPARSE_BUCKET
    if filler:  # filler rows repeat position 0 with target -100: no loss, no gradient
        index = torch.cat((index, index.new_zeros(filler)))
    picked_targets = targets.flatten().index_select(0, index)
    if filler:
        picked_targets[-filler:] = -100
    return hidden.flatten(0, 1).index_select(0, index).unsqueeze(0), picked_targets.unsqueeze(0), None


def mean_steps(halt_step: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Mean number of recursion steps used (1..T_max) over real (non-padding) positions."""
    steps = (halt_step + 1).float()
    if attention_mask is None or attention_mask.shape[-1] != steps.shape[-1]:
        return steps.mean()
    mask = attention_mask.to(steps.dtype)
    return (steps * mask).sum() / mask.sum().clamp_min(1.0)


def _head_dtype(hidden: torch.Tensor) -> torch.dtype:
    """The dtype lm_head would return: the autocast dtype under autocast, else the hidden dtype."""
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
