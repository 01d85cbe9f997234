"""The Phase 1 model: TRM x Titans-MAG as a Hugging Face causal LM (D3).

    config = ForgeConfig.from_shape("tiny", act_threshold=0.9)      # or "spec25m", "smoke"
    model = ForgeForCausalLM(config)
    out = model(input_ids, labels=input_ids)   # loss, lm_loss, step_losses, act_loss, gate_entropy, ...
    model.generate(prompt, max_new_tokens=32)  # cached: the prefix is never recomputed
    model.set_non_shape(surprise_weight=0.7, novelty_weight=0.3)    # a specialist (D2)
    state = model.prefix_state(ids); cache = model.branch(state, batch_index, anchor_pos)
    out = model.stream_forward(thought_tokens, cache)                # Quiet-STaR streams (Phase 3)

Parts, one module each: `attention` (sliding window, partial RoPE, max-logit tracking for QK-clip),
`memory` (Titans memory, closed-form update), `gate` (MAG blend), `block` (one layer), `backbone`,
`trm` (recursion drivers), `act` (halting head and targets), `head_loss` (fused head cross-entropy),
`cache` (generation cache), `streams`, `params` (parameter breakdown), `modeling` (the HF model).

Importing this package registers `ForgeConfig` / `ForgeForCausalLM` with `AutoConfig` and
`AutoModelForCausalLM`, so `AutoModelForCausalLM.from_pretrained(dir)` loads a saved model.
"""

from transformers import AutoConfig, AutoModelForCausalLM

from agent_forge.model.cache import ForgeCache
from agent_forge.model.config import SHAPES, ForgeConfig
from agent_forge.model.modeling import ForgeForCausalLM, ForgeOutput
from agent_forge.model.streams import PrefixState, StreamCache, StreamOutput

AutoConfig.register(ForgeConfig.model_type, ForgeConfig, exist_ok=True)
AutoModelForCausalLM.register(ForgeConfig, ForgeForCausalLM, exist_ok=True)

__all__ = [
    "SHAPES",
    "ForgeCache",
    "ForgeConfig",
    "ForgeForCausalLM",
    "ForgeOutput",
    "PrefixState",
    "StreamCache",
    "StreamOutput",
]
