"""`ForgeConfig`: every shape and non-shape hyperparameter of the TRM x Titans-MAG model.

The named shapes are data: the `model` section of each preset (`config/presets/<name>.yaml`), read through
`agent_forge.config.schema.ModelSection`, which validates it and holds the defaults of the fields a preset
leaves out. `ForgeConfig` is the Hugging Face carrier of those values (saved as `config.json` with every
model): the fields it shares with `ModelSection` take its defaults, so the two never disagree (tested),
and `ForgeConfig.from_shape("tiny")` builds exactly what a run of the `tiny` preset builds. Its other
fields are the specialist values of D2 and fixed constants. Specialists differ only in non-shape values:
`act_threshold`, `mem_capacity` / `mem_decay`, `surprise_weight`, `novelty_weight` (and data order).

How the Titans memory constants come from those values (per chunk of `mem_chunk` tokens):
- forgetting  alpha = 1 - exp(-mem_chunk / mem_capacity)   (or 1 - mem_decay**mem_chunk when set),
  so a memory of capacity C tokens keeps about exp(-n/C) of what it stored n tokens ago;
- surprise    theta = surprise_weight * mem_lr / mem_chunk: the step size on the surprise gradient
  (keys are unit vectors, so the per-chunk gradient grows with the chunk; dividing keeps it stable);
- novelty     eta   = novelty_weight: the momentum that lets a past surprise keep writing.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from agent_forge.config.loader import available_presets, preset_dict
from agent_forge.config.schema import ModelSection

Number = int | float

_SECTION = ModelSection()  # the defaults of the model section (a preset overrides them)


class _PresetShapes(Mapping[str, dict[str, Any]]):
    """``SHAPES[name]``: the ``model`` section of preset ``name``, as its YAML file writes it."""

    def __getitem__(self, name: str) -> dict[str, Any]:
        if name not in available_presets():
            raise KeyError(name)
        return dict(preset_dict(name).get("model") or {})

    def __iter__(self) -> Iterator[str]:
        return iter(available_presets())

    def __len__(self) -> int:
        return len(available_presets())


SHAPES: Mapping[str, dict[str, Any]] = _PresetShapes()

POSITIVE_FIELDS = (
    "vocab_size",
    "hidden_size",
    "num_layers",
    "num_heads",
    "mlp_hidden",
    "max_seq_len",
    "window",
    "d_mem",
    "mem_chunk",
    "mem_capacity",
    "gate_hidden",
    "trm_t_max",
    "trm_micro_steps",
    "trm_hidden",
)


@strict
class ForgeConfig(PreTrainedConfig):
    """Configuration of `ForgeForCausalLM`; see the module docstring for the memory mapping."""

    model_type = "agent_forge_trm"
    attribute_map: ClassVar[dict[str, str]] = {
        "num_hidden_layers": "num_layers",
        "num_attention_heads": "num_heads",
        "max_position_embeddings": "max_seq_len",
        "intermediate_size": "mlp_hidden",
    }

    vocab_size: int = _SECTION.vocab_size
    hidden_size: int = _SECTION.hidden_size
    num_layers: int = _SECTION.num_layers
    num_heads: int = _SECTION.num_heads
    mlp_hidden: int = _SECTION.mlp_hidden
    max_seq_len: int = _SECTION.max_seq_len
    window: int = _SECTION.window
    rotary_fraction: Number = _SECTION.rotary_fraction
    rope_theta: Number = 10000.0
    d_mem: int = _SECTION.d_mem
    mem_chunk: int = _SECTION.mem_chunk
    mem_capacity: int = 4096
    mem_decay: Number | None = None
    mem_lr: Number = 1.0
    surprise_weight: Number = 0.5
    novelty_weight: Number = 0.5
    gate_hidden: int = _SECTION.gate_hidden
    gate_entropy_reg: Number = _SECTION.gate_entropy_reg
    trm_t_max: int = _SECTION.trm_t_max
    trm_micro_steps: int = _SECTION.trm_micro_steps
    trm_hidden: int = _SECTION.trm_hidden
    step_weights: list[Number] | None = None
    act_threshold: Number = _SECTION.act_threshold
    act_ema: Number = _SECTION.act_ema
    act_loss_weight: Number = 0.1
    act_step_cost: Number = _SECTION.act_step_cost
    static_act: bool = False
    rms_norm_eps: Number = 1e-6
    initializer_range: Number = 0.02
    use_cache: bool = True
    tie_word_embeddings: bool = True
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    bitlinear: dict[str, Any] | None = None  # the ternary layers (quant.bitlinear.ternary_layout); None: float

    def __post_init__(self, **kwargs: Any) -> None:
        self._check_values()
        super().__post_init__(**kwargs)

    def _check_values(self) -> None:
        """Raise ValueError naming the field, so an impossible config fails before any tensor exists."""
        self._check_shape()
        if not 0.0 <= self.novelty_weight < 1.0:
            raise ValueError(
                f"novelty_weight must lie in [0, 1) (it is the memory momentum), got {self.novelty_weight}"
            )
        if not 0.0 <= self.surprise_weight * self.mem_lr <= 1.0:
            raise ValueError("surprise_weight * mem_lr must lie in [0, 1] for a stable memory update")
        if self.mem_decay is not None and not 0.0 < self.mem_decay <= 1.0:
            raise ValueError(f"mem_decay must lie in (0, 1], got {self.mem_decay}")
        if self.act_step_cost < 0:
            raise ValueError(f"act_step_cost must be at least 0 (nats per recursion step), got {self.act_step_cost}")
        for name in ("act_threshold", "act_ema"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in (0, 1), got {getattr(self, name)}")
        weights = self.step_weights
        if weights is not None and (len(weights) != self.trm_t_max or min(weights) < 0 or sum(weights) <= 0):
            raise ValueError(f"step_weights needs {self.trm_t_max} non-negative values with a positive sum")

    def _check_shape(self) -> None:
        for name in POSITIVE_FIELDS:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        if not 0.0 < self.rotary_fraction <= 1.0 or self.rotary_dim < 2:
            raise ValueError(f"rotary_fraction {self.rotary_fraction} leaves no rotary pair in the head")

    @classmethod
    def from_section(cls, section: ModelSection, **overrides: Any) -> ForgeConfig:
        """The model of a pipeline config's ``model`` section, with any field overridden."""
        return cls(**{**section.model_dump(), **overrides})

    @classmethod
    def from_shape(cls, shape: str, **overrides: Any) -> ForgeConfig:
        """The model of a named preset (`spec25m`, `tiny`, `smoke`) with any field overridden."""
        if shape not in SHAPES:
            raise ValueError(f"unknown shape '{shape}', use one of {sorted(SHAPES)}")
        return cls.from_section(ModelSection.model_validate(SHAPES[shape]), **overrides)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def rotary_dim(self) -> int:
        """The first `rotary_dim` dims of every head are rotated (an even number)."""
        return int(self.head_dim * self.rotary_fraction) // 2 * 2

    @property
    def mem_alpha(self) -> float:
        if self.mem_decay is not None:
            return 1.0 - float(self.mem_decay) ** self.mem_chunk
        return 1.0 - math.exp(-self.mem_chunk / self.mem_capacity)

    @property
    def mem_theta(self) -> float:
        return float(self.surprise_weight) * float(self.mem_lr) / self.mem_chunk

    @property
    def mem_eta(self) -> float:
        return float(self.novelty_weight)

    @property
    def resolved_step_weights(self) -> list[float]:
        """Deep-supervision weights normalised to sum to one (equal by default)."""
        raw = self.step_weights or [1.0] * self.trm_t_max
        total = float(sum(raw))
        return [float(w) / total for w in raw]
