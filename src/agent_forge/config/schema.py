"""Pydantic models of every configuration section.

Unknown keys are rejected (``extra="forbid"``) and values are range-checked, so a typo or an impossible
value fails at load time with the key named, never halfway through a run.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

PHASE_NAMES: tuple[str, ...] = (
    "cognate",
    "evomerge",
    "quietstar",
    "bitnet",
    "forge",
    "baking",
    "edge",
    "final",
)

# The sections were called phase1..phase8 before they took the phases' names; files, ``--set`` keys and
# session configs written then still load through these aliases (config.loader renames them).
SECTION_ALIASES: dict[str, str] = {f"phase{number}": name for number, name in enumerate(PHASE_NAMES, start=1)}
# Keys renamed inside a section, old -> new: Phase 3's supervised thought training was called "bake", the word
# Phase 6 uses for its KL prompt baking.
KEY_ALIASES: dict[str, dict[str, str]] = {
    "quietstar": {"bake_examples": "thought_sft_examples", "bake_steps": "thought_sft_steps",
                  "bake_lr_scale": "thought_sft_lr_scale"},
}


# Every number without its own upper bound gets this one: far above any real run, far below overflow.
MAX_MAGNITUDE = 10**9


def _check_bounded(value: Any) -> None:
    """Raise ValueError for an infinite, NaN or absurdly large number anywhere in ``value``."""
    if isinstance(value, bool) or value is None or isinstance(value, BaseModel):
        return  # nested sections check their own fields
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        if abs(value) > MAX_MAGNITUDE:
            raise ValueError(f"must be at most {MAX_MAGNITUDE:.0e} in magnitude")
    elif isinstance(value, dict):
        for item in value.values():
            _check_bounded(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _check_bounded(item)


class Strict(BaseModel):
    """Base for config sections: unknown keys, wrong types and unbounded or non-finite numbers are errors."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    @field_validator("*", mode="after")
    @classmethod
    def _bounded(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields[info.field_name] if info.field_name else None
        has_upper = field is not None and any(
            isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in field.metadata
        )
        if not has_upper:
            _check_bounded(value)
        return value


class ModelSection(Strict):
    """Shape and non-shape hyperparameters of the TRM x Titans-MAG model (see ``agent_forge.model``)."""

    vocab_size: int = Field(2048, ge=300)
    hidden_size: int = Field(128, ge=8)
    num_layers: int = Field(4, ge=1)
    num_heads: int = Field(4, ge=1)
    mlp_hidden: int = Field(344, ge=8)
    max_seq_len: int = Field(128, ge=16)
    window: int = Field(64, ge=4)
    rotary_fraction: float = Field(0.5, gt=0.0, le=1.0)
    d_mem: int = Field(32, ge=4)
    mem_chunk: int = Field(16, ge=1)
    gate_hidden: int = Field(32, ge=4)
    gate_entropy_reg: float = Field(0.001, ge=0.0)
    trm_t_max: int = Field(3, ge=1, le=16)
    trm_micro_steps: int = Field(2, ge=1, le=16)
    trm_hidden: int = Field(128, ge=4)
    act_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    act_ema: float = Field(0.98, ge=0.0, lt=1.0)
    act_step_cost: float = Field(0.02, ge=0.0)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelSection:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} must be divisible by num_heads {self.num_heads}"
            )
        return self


class SourceSection(Strict):
    """One data source of the mixture (converted to ``agent_forge.data.sources.SourceConfig`` when loading)."""

    name: str
    kind: Literal["builtin", "arc_easy", "gsm8k", "mbpp", "piqa", "svamp", "text"] = "builtin"
    path: str | None = None
    hub_id: str | None = None
    split: str = "train"
    weight: float = Field(1.0, gt=0.0)
    max_examples: int | None = Field(None, ge=1)


class DataSection(Strict):
    """Where training text comes from and how it is split and tokenised."""

    sources: list[SourceSection] = Field(default_factory=lambda: [SourceSection(name="builtin", kind="builtin")])
    train_examples: int = Field(20000, ge=16)
    heldout_examples: int = Field(256, ge=8)
    heldout_lm_sequences: int = Field(32, ge=1)
    selection_examples: int = Field(256, ge=8)  # tasks of the selection split: monitoring, fitness, tuning
    max_level: int = Field(5, ge=1, le=10)
    kinds: list[Literal["arith", "mc", "code"]] = Field(default_factory=lambda: ["arith", "mc", "code"])
    seq_len: int = Field(128, ge=16)
    # how examples become rows: "fit" keeps every example that fits a row whole (best fit, padded tails),
    # "concat" cuts one long stream every seq_len tokens (an example may start in one row and end in the next)
    packing: Literal["fit", "concat"] = "fit"
    seed: int = 0
    # the training mix of every phase (a specialist's own weights replace it); empty: all kinds and levels equal
    kind_weights: dict[str, float] = Field(default_factory=dict)
    # share of each kind's training examples (every phase) written with a thought: body <think>..</think> cue answer
    thought_share: dict[str, float] = Field(default_factory=dict)
    # tool demonstrations added to every phase's mix, as a share of its examples: the tool prompt, a task
    # (arithmetic word problems of every level, a quarter bare calculations and unit conversions), its calls
    tool_demo_share: float = Field(0.0, ge=0.0, le=1.0)
    # share of every phase's rows written under the persona prompt, with the persona's greeting after the body
    persona_share: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("kind_weights")
    @classmethod
    def _known_kinds(cls, weights: dict[str, float]) -> dict[str, float]:
        return checked_kind_weights(weights)

    @field_validator("thought_share")
    @classmethod
    def _shares(cls, shares: dict[str, float]) -> dict[str, float]:
        for kind, share in shares.items():
            if kind not in ("arith", "mc", "code") or not 0.0 <= share <= 1.0:
                raise ValueError(f"thought_share key '{kind}' must be a kind (arith, mc, code) with a share in [0, 1]")
        return shares


class SpecialistSection(Strict):
    """One Phase 1 specialist: differs from its siblings only in non-shape hyperparameters (D2)."""

    name: str
    seed: int
    act_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    mem_capacity: int = Field(4096, ge=1)
    surprise_weight: float = Field(0.5, ge=0.0)
    novelty_weight: float = Field(0.5, ge=0.0)
    kind_weights: dict[str, float] = Field(default_factory=dict)  # "arith": 2.0, or one level: "arith@1": 4.0

    @field_validator("kind_weights")
    @classmethod
    def _known_kinds(cls, weights: dict[str, float]) -> dict[str, float]:
        return checked_kind_weights(weights)


def checked_kind_weights(weights: dict[str, float]) -> dict[str, float]:
    """Keys are a kind (arith, mc, code) or kind@level, weights in [0, 1e6); raises ValueError otherwise."""
    for key, weight in weights.items():
        kind, _, level = key.partition("@")
        if kind not in ("arith", "mc", "code") or (level and not level.isdigit()) or not 0 <= weight < 1e6:
            raise ValueError(f"kind_weights key '{key}' must be a kind (arith, mc, code) or kind@level "
                             "with a weight in [0, 1e6)")
    return weights


def _default_specialists() -> list[SpecialistSection]:
    return [
        SpecialistSection(
            name="reasoning", seed=42, act_threshold=0.95, mem_capacity=4096,
            surprise_weight=0.7, novelty_weight=0.3, kind_weights={"arith": 2.0, "mc": 1.0, "code": 1.0},
        ),
        SpecialistSection(
            name="memory_integration", seed=1337, act_threshold=0.90, mem_capacity=8192,
            surprise_weight=0.5, novelty_weight=0.5, kind_weights={"arith": 1.0, "mc": 2.0, "code": 1.0},
        ),
        SpecialistSection(
            name="adaptive_computation", seed=2023, act_threshold=0.99, mem_capacity=2048,
            surprise_weight=0.3, novelty_weight=0.7, kind_weights={"arith": 1.0, "mc": 1.0, "code": 2.0},
        ),
    ]


class TrainSection(Strict):
    """Settings shared by the training loops of phases 1, 3, 5 and 6."""

    batch_size: int = Field(16, ge=1)
    grad_clip: float = Field(1.0, gt=0.0)
    warmup_steps: int = Field(20, ge=0)
    eval_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    bf16: Literal["auto", "on", "off"] = "auto"
    spike_factor: float = Field(4.0, gt=1.0)
    max_recoveries: int = Field(3, ge=0)


class CognateSection(Strict):
    """Cognate: a shared trunk, then three specialists (D2)."""

    trunk_steps: int = Field(300, ge=1)
    specialist_steps: int = Field(100, ge=1)
    grokfast: bool = True
    lr_scale: float = Field(1.0, gt=0.0)
    prompt_loss_share: float = Field(1.0, ge=0.0, le=1.0)  # examples whose prompt tokens the loss scores too
    specialist_lr_scale: float = Field(1.0, gt=0.0, le=10.0)  # specialists' peak lr relative to the trunk's
    train: TrainSection = Field(default_factory=TrainSection)
    specialists: list[SpecialistSection] = Field(default_factory=_default_specialists)
    min_loss_drop: float = Field(0.70, ge=0.0, le=1.0)


class FitnessWeights(Strict):
    perplexity: float = Field(0.4, ge=0.0)
    accuracy: float = Field(0.3, ge=0.0)
    speed: float = Field(0.2, ge=0.0)
    memory: float = Field(0.1, ge=0.0)


class EvoMergeSection(Strict):
    """EvoMerge: eight binary combos, elite mutation and loser merging."""

    generations: int = Field(50, ge=0)
    mutation_sigma: float = Field(0.01, ge=0.0)
    mutation_rate: float = Field(0.01, ge=0.0, le=1.0)
    dare_drop: float = Field(0.9, ge=0.0, lt=1.0)
    ties_keep: float = Field(0.2, gt=0.0, le=1.0)
    frankenmerge_mode: Literal["best", "weighted"] = "weighted"
    fitness: FitnessWeights = Field(default_factory=FitnessWeights)
    fisher_batches: int = Field(2, ge=1)  # held-out LM rows the diagonal Fisher of DFS reads
    fisher_rows_per_batch: int = Field(1, ge=1)  # 1: per-example Fisher; more: one pass per batch (cheaper)
    seed: int = 7
    elites: int = Field(2, ge=1)
    children_per_elite: int = Field(3, ge=1)
    loser_groups: int = Field(2, ge=0)
    fitness_lm_sequences: int | None = Field(None, ge=1)  # held-out LM rows fitness reads (None: all)
    fitness_examples: int | None = Field(None, ge=1)  # held-out tasks fitness reads (None: all)
    eval_batch_size: int = Field(32, ge=1)


class QuietStarSection(Strict):
    """Quiet-STaR: supervised thought training (thought SFT) first, then parallel thoughts trained with REINFORCE."""

    thought_sft_examples: int = Field(1600, ge=7)
    thought_sft_steps: int = Field(120, ge=1)
    rl_steps: int = Field(40, ge=0)
    num_thoughts: int = Field(4, ge=2, le=8)
    thought_len: int = Field(8, ge=1)
    positions_per_seq: int = Field(8, ge=1)
    kl_coeff: float = Field(0.1, ge=0.0)
    coherence_threshold: float = Field(0.70, ge=0.0, le=1.0)
    eval_examples: int = Field(64, ge=4)
    train: TrainSection = Field(default_factory=TrainSection)
    lookahead: int = Field(4, ge=1)  # true tokens each thought is scored on (Quiet-STaR: 4)
    rl_batch_size: int = Field(4, ge=1)
    positive_only: bool = False  # reinforce only better-than-average thoughts (official Quiet-STaR)
    plain_share: float = Field(0.25, ge=0.0, lt=1.0)  # plain prompt->answer rows kept in the thought SFT data
    thought_sft_lr_scale: float = Field(1.0, gt=0.0)
    rl_lr_scale: float = Field(1.0, gt=0.0)
    max_thought_tokens: int = Field(64, ge=4)  # greedy budget for <think> ... answer <eos> in evaluation
    think_eval_examples: int | None = Field(None, ge=1)  # D6 tasks of the think column per phase (None: all)
    convergence_threshold: float = Field(0.85, ge=0.0, le=1.0)
    semantic: bool = True  # all-MiniLM-L6-v2 similarity in the coherence score
    seed: int = 3


class BitNetSection(Strict):
    """BitNet b1.58: ternary weights, 8-bit activations, QAT recovery."""

    scale: Literal["tensor", "channel"] = "tensor"
    pack_format: Literal["tq2_0", "tq1_0"] = "tq1_0"
    # 16: fp16 like the other floats; 8: int8 rows; 4: 4-bit blocks of 32 (spec25m's 7x needs it)
    embedding_bits: Literal[16, 8, 4] = 16
    keep: list[str] = Field(default_factory=lambda: ["lm_head"])  # linears left in full precision
    calibration_samples: int = Field(64, ge=1)
    finetune_steps: int = Field(60, ge=0)
    finetune_trigger_drop: float = Field(0.10, ge=0.0, le=1.0)  # 0 = always fine-tune
    ramp: bool = True
    ramp_fraction: float = Field(0.75, gt=0.0, le=1.0)  # share of the QAT steps over which ramp goes 0 -> 1
    compare_ramp: bool = False
    lr_scale: float = Field(1.0, gt=0.0)  # multiplies both learning rates of the D11 Phase 4 preset
    prompt_loss_share: float = Field(1.0, ge=0.0, le=1.0)  # as Phase 1's: examples whose prompts QAT scores
    # weight of KL(fp teacher || ternary student) beside the data loss in QAT; 0: the data loss alone
    distill_weight: float = Field(0.0, ge=0.0)
    train: TrainSection = Field(default_factory=TrainSection)


class ForgeSection(Strict):
    """Phase 5 (forge: curriculum training): curriculum over difficulty levels with dream replay."""

    steps: int = Field(200, ge=1)
    min_level: int = Field(1, ge=1)
    max_level: int = Field(5, ge=1)
    band_up: float = Field(0.75, gt=0.0, le=1.0)
    band_down: float = Field(0.55, ge=0.0, lt=1.0)
    eval_interval: int = Field(25, ge=1)
    eval_examples: int = Field(48, ge=4)
    dream_every: int = Field(50, ge=1)
    dream_steps: int = Field(5, ge=0)
    grokfast: bool = True
    lr_scale: float = Field(1.0, gt=0.0)  # multiplies both learning rates of the D11 Phase 5 preset
    train: TrainSection = Field(default_factory=TrainSection)

    @model_validator(mode="after")
    def _band_ordered(self) -> ForgeSection:
        if self.band_down >= self.band_up:
            raise ValueError(f"band_down {self.band_down} must be below band_up {self.band_up}")
        if self.min_level > self.max_level:
            raise ValueError(f"min_level {self.min_level} must not exceed max_level {self.max_level}")
        return self


class BakingSection(Strict):
    """Baking: tool-use and persona prompts baked into the weights."""

    tool_prompt: str = "builtin:tools"
    persona_prompt: str = "builtin:persona"
    steps_per_bake: int = Field(60, ge=1)
    # D16. persona_first: the persona bake, then the tool bake, whose teacher is the persona-baked model
    # reading the tool prompt; tools_first: the other order, the persona baked on kinds that make no calls
    schedule: Literal["persona_first", "tools_first"] = "persona_first"
    # kinds whose bodies the tool bake's teacher continues without the tool prompt: the model before the bake
    # answers them, so the bake holds its behaviour there (a KL anchor) instead of copying calls where tools do
    # not belong
    anchor_kinds: list[str] = Field(default_factory=list)
    # the tool bake's bare calculations also pair operands of unequal width (the training mix's never do)
    mixed_width_demos: bool = False
    # the tool bake's bare calculations and conversions continue with their reference demonstration (the call,
    # the runtime's result, the answer), scored as hard targets, instead of the teacher's sampled thought
    reference_demos: bool = False
    # that many more bare calculations (levels 1-2, results of up to six digits) in the tool bake
    calculation_demos: int = Field(0, ge=0)
    # D22: that many arithmetic bodies in the tool bake followed by <think> and a strategy marker, continued by
    # the model without the tool prompt (a KL anchor): the bake holds its reasoning thoughts while it teaches calls
    thought_anchors: int = Field(0, ge=0)
    continuations: int = Field(64, ge=1)
    continuation_len: int = Field(24, ge=1)
    samples_per_query: int = Field(4, ge=1)
    temperature: float = Field(1.0, gt=0.0)
    lora_rank: int = Field(0, ge=0)
    lr_scale: float = Field(1.0, gt=0.0)
    eval_examples: int = Field(32, ge=4)
    eval_new_tokens: int = Field(24, ge=4)
    max_calls: int = Field(6, ge=1)
    tools_eval_examples: int = Field(150, ge=0)  # the D6 tools column (phases 6 and 8), stratified by kind and level
    train: TrainSection = Field(default_factory=TrainSection)


class EdgeSection(Strict):
    """Edge: ONNX and packed-ternary bundles with a latency profile."""

    formats: list[Literal["onnx", "ternary"]] = Field(default_factory=lambda: ["onnx", "ternary"])
    onnx_int8: bool = True
    prefill_lengths: list[int] = Field(default_factory=lambda: [128, 512])
    decode_tokens: int = Field(32, ge=1)
    agreement_tokens: int = Field(64, ge=1)
    profile_repeats: int = Field(3, ge=1)
    ternary_format: Literal["tq2_0", "tq1_0"] = "tq2_0"  # TQ1_0: 1.69 bits a weight instead of 2.06
    float_dtype: Literal["float32", "float16"] = "float16"  # non-ternary tensors of the bundle
    embedding_bits: Literal[16, 8] = 16  # 8: int8 embedding rows in the bundle
    agreement_rows: int = Field(4, ge=1)  # held-out rows for the logits comparison
    agreement_prompts: int = Field(1, ge=1)  # held-out prompts for greedy agreement
    threads: int = Field(0, ge=0)  # threads of every runtime while measuring; 0: the run's own (runtime.threads)


class FinalSection(Strict):
    """Final compression: usq / SeedLM / VPTQ and entropy coding under a quality budget (measured on the
    selection split: perplexity and every kind's accuracy)."""

    max_ppl_increase: float = Field(0.10, ge=0.0)
    max_accuracy_drop: float | None = Field(0.02, ge=0.0, le=1.0)  # per kind, absolute; None: not bounded
    # a larger drop fails only beyond this z of the paired test (McNemar); None: every larger drop fails
    accuracy_drop_z: float | None = Field(1.96, gt=0.0)
    # kinds also measured in tools mode on the selection split, each a kind of the budget ("tools_arith")
    tools_kinds: list[str] = Field(default_factory=list)
    # bare calculations (levels 1-2, selection split) of the budget's kind "tools_bare": written exactly?
    tools_bare_tasks: int = Field(0, ge=0, le=5000)
    # arithmetic word problems (levels 1-3, selection split) of the kind "tools_words": calls and answer exact?
    tools_word_tasks: int = Field(0, ge=0, le=5000)
    methods: list[Literal["usq", "vptq", "seedlm"]] = Field(default_factory=lambda: ["usq"])
    usq_steps: list[Annotated[float, Field(gt=0.0)]] = Field(default_factory=lambda: [0.2, 0.3, 0.45, 0.65],
                                                           min_length=1)  # grid steps tried
    usq_clusters: int = Field(4, ge=1)
    usq_max_exponent: int = Field(4, ge=0, le=15)
    importance_examples: int = Field(4000, ge=0)  # training examples read for the embedding's token counts
    baselines: bool = True  # also measure Q4_0 + xz -9e and xz -9e alone on the same model
    seedlm_block: int = Field(8, ge=2)
    seedlm_coeffs: int = Field(4, ge=1)
    seedlm_bits: int = Field(4, ge=2, le=8)
    seedlm_lfsr_bits: int = Field(16, ge=4, le=20)
    vptq_vector: int = Field(4, ge=1)
    vptq_codebook: int = Field(256, ge=2)
    vptq_residual: bool = False
    zstd_level: int = Field(19, ge=1, le=22)
    float_dtype: Literal["float16", "float32"] = "float16"
    min_lossy_numel: int = Field(4096, ge=1)


class HandoffRule(Strict):
    """Checks applied to a phase's output before the next phase may start (spec 3.1.4)."""

    num_models: int | None = Field(None, ge=1)
    param_range: tuple[int, int] | None = None
    required_metadata: list[str] = Field(default_factory=list)
    min_fitness: float | None = None
    min_accuracy: float | None = None
    min_accuracy_by_kind: dict[str, float] = Field(default_factory=dict)  # kind -> least D6 accuracy
    max_size_mb: float | None = Field(None, gt=0.0)
    min_compression_ratio: float | None = Field(None, gt=0.0)
    max_latency_ms: float | None = Field(None, gt=0.0)
    max_ppl_increase: float | None = Field(None, ge=0.0)
    min_loss_drop: float | None = Field(None, ge=0.0, le=1.0)


class CleanupSection(Strict):
    """Session retention policy (spec 3.1.3)."""

    max_session_age_days: float = Field(30, ge=0)
    max_failed_session_age_days: float = Field(7, ge=0)
    max_sessions_total: int = Field(100, ge=1)
    checkpoint_every_n_sessions: int = Field(10, ge=1)
    auto_cleanup_enabled: bool = True


class TrackingSection(Strict):
    wandb: Literal["off", "offline", "online"] = "off"
    wandb_project: str = "agent-forge"
    system_metrics_every: int = Field(25, ge=1)


class RuntimeSection(Strict):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = Field(0, ge=0)
    seed: int = 1234


class PipelineConfig(Strict):
    """The whole resolved configuration of a run; stored with the session so `resume` reuses it."""

    preset: str = "tiny"
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    cognate: CognateSection = Field(default_factory=CognateSection)
    evomerge: EvoMergeSection = Field(default_factory=EvoMergeSection)
    quietstar: QuietStarSection = Field(default_factory=QuietStarSection)
    bitnet: BitNetSection = Field(default_factory=BitNetSection)
    forge: ForgeSection = Field(default_factory=ForgeSection)
    baking: BakingSection = Field(default_factory=BakingSection)
    edge: EdgeSection = Field(default_factory=EdgeSection)
    final: FinalSection = Field(default_factory=FinalSection)
    handoff: dict[str, HandoffRule] = Field(default_factory=dict)
    cleanup: CleanupSection = Field(default_factory=CleanupSection)
    tracking: TrackingSection = Field(default_factory=TrackingSection)
    runtime: RuntimeSection = Field(default_factory=RuntimeSection)

    @model_validator(mode="after")
    def _handoff_keys_name_phases(self) -> PipelineConfig:
        for key in self.handoff:
            parts = [p.strip() for p in key.split("->")]
            valid = len(parts) == 2 and parts[0] in PHASE_NAMES and parts[1] in (*PHASE_NAMES, "output")
            if not valid:
                raise ValueError(f"handoff key '{key}' must look like 'cognate->evomerge' (or 'final->output')")
        return self

    def phase_section(self, phase_name: str) -> BaseModel:
        """The section of one phase by its name (``cognate`` -> ``config.cognate``)."""
        if phase_name not in PHASE_NAMES:
            raise ValueError(f"unknown phase '{phase_name}'")
        return getattr(self, phase_name)
