"""What every phase recipe shares: the session's tokenizer and held-out set, the training step, the D6
record, and packing a ternary output the way its input was packed.

The tokenizer is trained once per session (Phase 1) and stored in the session folder; the held-out set is
rebuilt from the config's seed, so every phase measures the same examples (D6). Model files are read and
written by ``agent_forge.model_io`` (shared with the CLI, the dashboard and export).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agent_forge.baking.prompts import BakePrompt, load_prompt
from agent_forge.config.schema import PipelineConfig
from agent_forge.data.dataset import PackedDataset, pack_rows
from agent_forge.data.sources import SourceConfig, heldout_examples, load_mixture, source_configs, training_examples
from agent_forge.data.tasks import TaskExample, training_text
from agent_forge.data.tokenizer import ForgeTokenizer, train_tokenizer
from agent_forge.errors import ConfigError
from agent_forge.eval.capability import flat_accuracy
from agent_forge.eval.heldout import HeldoutSet, evaluate
from agent_forge.eval.metrics import EvalResult
from agent_forge.eval.suite import select_examples
from agent_forge.model import ForgeConfig, ForgeForCausalLM
from agent_forge.model_io import pack_exactly, packed_config_of, packed_file_name
from agent_forge.pipeline.phase import EvalRecord
from agent_forge.quant.bitlinear import bitlinear_modules
from agent_forge.quant.fast_linear import to_packed_inference
from agent_forge.quant.packed_io import PackedSaveConfig
from agent_forge.reasoning.data import TrainingStyle, row_segments, training_rows
from agent_forge.reasoning.think_mode import think_report
from agent_forge.reasoning.tools_mode import tools_report
from agent_forge.storage.artifacts import ModelRef
from agent_forge.storage.atomic import atomic_dir
from agent_forge.tools.demos import calls_with_results, demo_tasks, task_calls
from agent_forge.train.distributed import world
from agent_forge.train.loop import StepOutput

TOKENIZER_CORPUS = 4000
DEMO_SEED = 7919  # tool demonstrations are drawn apart from the examples they are mixed with
LATENCY_TOKENS = 16
TOKENS_PER_EXAMPLE = 24  # a low estimate of a task example's length, to size one epoch of training data


@dataclass
class SessionHeldout(HeldoutSet):
    """The session's held-out set and what its small sources lacked (source name -> missing examples): a
    held-out set never repeats an example, so the D6 record says when it is smaller than configured."""

    shortfall: dict[str, int] = field(default_factory=dict)


@dataclass
class SessionData:
    """The session's tokenizer, its training examples and the held-out set all phases share."""

    tokenizer: ForgeTokenizer
    heldout: HeldoutSet
    sources: list[SourceConfig]
    config: PipelineConfig

    @cached_property
    def selection(self) -> HeldoutSet:
        """Tasks of the selection split, disjoint from the held-out set: what monitoring, fitness and
        tuning may choose on, so the D6 figures are never selected on."""
        data = self.config.data
        examples = load_mixture(self.sources, data.seed, n_examples=data.selection_examples, split="selection",
                                kinds=data.kinds, max_level=data.max_level)
        return HeldoutSet.build(self.tokenizer, examples, data.seq_len, max_lm_sequences=data.heldout_lm_sequences)


def session_data(ctx: Any) -> SessionData:
    """Load (or on first use train and store) the session tokenizer; build the held-out set once."""
    if "session_data" in ctx.shared:
        return ctx.shared["session_data"]
    folder = ctx.workspace.session_dir(ctx.session_id) / "tokenizer"
    if (folder / "tokenizer.json").exists():
        tokenizer = ForgeTokenizer.load(folder)
    else:
        tokenizer = build_tokenizer(ctx.config)
        if ctx.is_main:
            with atomic_dir(folder) as tmp:
                tokenizer.save(tmp)
    examples = heldout_examples(ctx.config)
    held = SessionHeldout.build(tokenizer, examples, ctx.config.data.seq_len,
                                max_lm_sequences=ctx.config.data.heldout_lm_sequences)
    held.shortfall = dict(examples.shortfall)
    ctx.shared["session_data"] = SessionData(tokenizer, held, source_configs(ctx.config), ctx.config)
    return ctx.shared["session_data"]


def build_tokenizer(config: PipelineConfig) -> ForgeTokenizer:
    """Byte-level BPE trained on a training-split sample of the configured data, every kind and level
    weighed alike whatever the training mix: a tokenizer learnt on the arithmetic-heavy tiny mix cost
    multiple choice 0.47 -> 0.32 after Phase 1 (measured, two default runs differing only in this)."""
    corpus = training_examples(config, TOKENIZER_CORPUS, config.data.seed + 101, kind_weights={})
    texts = [training_text(e) for e in corpus]
    style = training_style(config)
    demos = tool_demos(config, round(TOKENIZER_CORPUS * config.data.tool_demo_share), config.data.seed + 102)
    texts += ["".join(text for text, _ in row_segments(task, style, None, calls)) for task, calls in demos]
    if style.persona_share:  # the persona prompt and greeting are words of the session too
        texts += [style.persona_prompt + training_text(e) for e in corpus[: round(len(corpus) * style.persona_share)]]
    return train_tokenizer(texts, config.model.vocab_size)


def forge_config(config: PipelineConfig, **non_shape: Any) -> ForgeConfig:
    """The model config of the preset, with optional non-shape values (a specialist's)."""
    return ForgeConfig.from_section(config.model, **non_shape)


def packed_dataset(ctx: Any, tokenizer: ForgeTokenizer, examples: list[TaskExample], batch_size: int,
                   seed: int, prompt_loss_share: float = 1.0, packing: str | None = None) -> PackedDataset:
    """Batches of the global size ``batch_size``: under torchrun each rank reads its share of every batch
    (DistributedSampler order), so N processes see exactly the rows one process would. Every phase's mix
    is written alike: ``data.thought_share`` of each kind with its thought, ``data.tool_demo_share`` more
    rows of tool demonstrations and ``data.persona_share`` of the rows under the persona prompt. ``packing``
    replaces ``data.packing`` (Quiet-STaR's RL reads plain text rows, never padded ones)."""
    rank, size = world()
    if batch_size % size:
        raise ConfigError(f"batch size {batch_size} cannot be split over {size} processes",
                          "use a batch_size divisible by the number of processes (--set phaseN.train.batch_size=)")
    data = ctx.config.data
    packing = packing or data.packing
    if not (data.thought_share or data.tool_demo_share or data.persona_share or packing == "fit"):
        return PackedDataset.from_examples(tokenizer, examples, data.seq_len, batch_size // size, seed,
                                           rank=rank, world_size=size, prompt_loss_share=prompt_loss_share)
    demos = tool_demos(ctx.config, round(len(examples) * data.tool_demo_share), seed + DEMO_SEED)
    ids, labels = training_rows(tokenizer, examples, training_style(ctx.config), prompt_loss_share, seed, demos)
    order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(seed)).tolist()  # demos among the rest
    ids, labels = [ids[i] for i in order], [labels[i] for i in order]
    rows, row_labels = pack_rows(ids, labels, data.seq_len, packing)
    scored_whole = packing == "concat" and prompt_loss_share >= 1.0  # concatenated rows score every token
    return PackedDataset(rows, batch_size // size, seed, rank, size, None if scored_whole else row_labels)


def baking_prompts(config: PipelineConfig) -> tuple[BakePrompt, BakePrompt]:
    """The tool-use and persona prompts of the session (``baking.tool_prompt``, ``baking.persona_prompt``):
    Phase 6 bakes them, and every phase's training mix shows what each prompt makes the model do."""
    section = config.baking
    return (load_prompt(section.tool_prompt, setting="baking.tool_prompt"),
            load_prompt(section.persona_prompt, setting="baking.persona_prompt"))


def training_style(config: PipelineConfig) -> TrainingStyle:
    data = config.data
    if not (data.tool_demo_share or data.persona_share):
        return TrainingStyle(thought_share=data.thought_share)
    tools, persona = baking_prompts(config)
    return TrainingStyle(data.thought_share, tools.text, persona.text, persona.greeting, data.persona_share)


def tool_demos(config: PipelineConfig, n: int, seed: int) -> list[tuple[TaskExample, list[tuple[str, str]]]]:
    """``n`` tool demonstrations (task, its calls with their results) from the training split."""
    if n <= 0:
        return []
    tasks = demo_tasks(n, seed, levels=tuple(range(1, config.data.max_level + 1)))
    return [(task, calls_with_results(task_calls(task))) for task in tasks]


def lm_step(model: nn.Module, batch: torch.Tensor | dict[str, torch.Tensor]) -> StepOutput:
    """The model's own training objective on a packed batch (labels = inputs, or the batch's own labels
    when it carries them; the model shifts them)."""
    ids, labels = (batch["input_ids"], batch["labels"]) if isinstance(batch, dict) else (batch, batch)
    out = model(input_ids=ids, labels=labels)
    return StepOutput(out.loss, objective_figures(out))


def frozen_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with no gradients: a teacher or a reference (Phases 3, 4 and 6)."""
    return copy.deepcopy(model).eval().requires_grad_(False)


def objective_figures(out: Any) -> dict[str, float]:
    """The logged parts of the model's own objective (a ``ForgeOutput`` with labels)."""
    parts = {"lm_loss": out.lm_loss, "act_loss": out.act_loss, "mean_halt_step": out.mean_halt_step}
    return {name: float(value.detach()) for name, value in parts.items()}


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---- the D6 record ----------------------------------------------------------------------------------------

@torch.no_grad()
def decode_latency_ms(model: ForgeForCausalLM, tokens: int = LATENCY_TOKENS) -> float:
    """Milliseconds per generated token at batch 1 with the cache (after one warm-up token)."""
    model.eval()
    ids = torch.ones(1, 8, dtype=torch.long, device=next(model.parameters()).device)
    out = model(input_ids=ids, use_cache=True)
    cache, next_id = out.cache, out.logits[:, -1:].argmax(-1)
    start = time.perf_counter()
    for _ in range(tokens):
        out = model(input_ids=next_id, cache=cache, use_cache=True)
        next_id = out.logits[:, -1:].argmax(-1)
    return (time.perf_counter() - start) * 1000.0 / tokens


def eval_record(model: ForgeForCausalLM, heldout: HeldoutSet, size_mb: float | None,
                latency: bool = True) -> EvalRecord:
    """Held-out perplexity, loss, bits/byte and accuracy (+ size and decode latency) of one model."""
    result = evaluate(model, heldout)
    return record_of(result, heldout, size_mb, decode_latency_ms(model) if latency else None)


def record_of(result: EvalResult, heldout: HeldoutSet, size_mb: float | None, latency_ms: float | None
              ) -> EvalRecord:
    """The D6 record of one evaluation: the headline figures plus accuracy per level, per kind and per
    kind and level, each kind with its count, 95% interval, chance level and majority baseline."""
    extra = {f"accuracy_level_{k}": v for k, v in result.accuracy_by_level.items()}
    if result.correct:
        extra.update(flat_accuracy(heldout.examples, result.correct))
    if isinstance(heldout, SessionHeldout):
        extra.update({f"heldout_shortfall/{name}": float(n) for name, n in heldout.shortfall.items()})
    return EvalRecord(perplexity=result.perplexity, loss=result.loss, bits_per_byte=result.bits_per_byte,
                      accuracy=result.accuracy, size_mb=size_mb, latency_ms=latency_ms, extra=extra)


def fp32_size_mb(model: nn.Module) -> float:
    """Bytes of the unique parameters at fp32 (tied weights once), in MB: the reference for ratios."""
    return parameter_count(model) * 4 / 1e6


def accuracy_metadata(record: EvalRecord) -> dict[str, float]:
    """A model's D6 accuracy, overall and per kind (``accuracy``, ``accuracy_<kind>``): the keys the
    hand-off rules ``min_accuracy`` and ``min_accuracy_by_kind`` read from a model's metadata."""
    kinds = [k[len("accuracy_"):-len("_n")] for k in record.extra
             if k.startswith("accuracy_") and k.endswith("_n") and k != "accuracy_n"]
    return {"accuracy": record.accuracy, **{f"accuracy_{kind}": record.extra[f"accuracy_{kind}"] for kind in kinds}}


def record_metrics(prefix: str, record: EvalRecord) -> dict[str, float]:
    """Flatten an EvalRecord into registry metrics named ``prefix/field``."""
    values = {k: v for k, v in record.to_dict().items() if k != "extra" and v is not None}
    values.update(record.extra)
    return {f"{prefix}/{k}": float(v) for k, v in values.items()}


# ---- ternary outputs (phases 4-6) -------------------------------------------------------------------------

def packed_inference_model(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with every BitLinear swapped for the packed integer kernel."""
    packed = copy.deepcopy(model).cpu().eval()
    to_packed_inference(packed)
    return packed


def packed_inference_latency_ms(model: nn.Module) -> float:
    """Decode latency at batch 1 of the packed integer path (how the ternary model is meant to run)."""
    return decode_latency_ms(packed_inference_model(model))


def input_pack_config(ref: ModelRef) -> PackedSaveConfig:
    """How a ternary input was packed (its file's header), so a phase's output stays in Phase 4's format;
    the default format for a ternary model stored without a packed file (one built outside the pipeline)."""
    return packed_config_of(ref) or PackedSaveConfig()


def pack_output(ctx: Any, model: nn.Module, config: PackedSaveConfig, heldout: HeldoutSet,
                what: str) -> tuple[Path, float]:
    """Pack a trained ternary model into this rank's work folder, exactly (see ``model_io.pack_exactly``).
    Returns (file, logit gap)."""
    packed = ctx.phase_dir / f"work_rank{world()[0]}" / packed_file_name(config.ternary_format)
    return packed, pack_exactly(model, packed, config, heldout.lm_batches(2)[0][0], what)


def thinking_kinds(config: PipelineConfig) -> tuple[str, ...]:
    """The kinds that think: those the training mix writes with thoughts (``data.thought_share``), or every
    kind when the mix has none (Phase 3 then teaches thinking from nothing)."""
    shares = config.data.thought_share
    return tuple(k for k, share in shares.items() if share > 0) if shares else tuple(config.data.kinds)


def add_think_record(record: EvalRecord, think: dict[str, float]) -> None:
    """Put the think-mode accuracy of each thinking kind (with its interval) and the validity into a D6
    record's ``extra``, where the trajectory table's think column reads it."""
    for key, value in think.items():
        name = key.removeprefix("think/")
        if name.startswith("think_") and "_level_" not in name:
            record.extra[f"think_accuracy_{name.removeprefix('think_')}"] = value
    if "think/validity_rate" in think:
        record.extra["think_validity"] = think["think/validity_rate"]


def tools_metrics(model: nn.Module, data: SessionData, config: PipelineConfig) -> dict[str, float]:
    """Tools mode on D6 tasks of every kind (``tools/...``, ``baking.tools_eval_examples`` of them, stratified
    by kind and level): per kind the accuracy with its interval, the call, well-formed and right-result
    rates, and the direct accuracy of the same tasks."""
    examples = select_examples(data.heldout.examples, None, None, config.baking.tools_eval_examples)
    if not examples:
        return {}
    if bitlinear_modules(model):  # the packed integer kernel: the same logits, faster to decode
        model = packed_inference_model(model)
    report = tools_report(model, data.tokenizer, examples, config.data.seq_len, config.quietstar.max_thought_tokens)
    flat: dict[str, float] = {}
    for kind, entry in report["kinds"].items():
        flat.update({f"tools/accuracy_{kind}{suffix}": entry[key] for key, suffix in
                     (("accuracy", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"), ("n", "_n"))})
        flat[f"tools/direct_{kind}"] = report["direct"]["kinds"][kind]["accuracy"]
        for figure, value in report["tools"][kind].items():
            flat[f"tools/{figure}_{kind}"] = value["accuracy"]
    return flat


def add_tools_record(record: EvalRecord, tools: dict[str, float]) -> None:
    """Put the tools-mode accuracy of each kind (with its interval) and the arithmetic call rate into a D6
    record's ``extra``, where the trajectory table's tools column reads it."""
    for key, value in tools.items():
        name = key.removeprefix("tools/")
        if name.startswith("accuracy_"):
            record.extra[f"tools_{name}"] = value
    if "tools/call_rate_arith" in tools:
        record.extra["tools_call_rate_arith"] = tools["tools/call_rate_arith"]


def think_metrics(model: nn.Module, data: SessionData, config: PipelineConfig) -> dict[str, float]:
    """Think mode on the D6 tasks of the thinking kinds (``think/...``): accuracy per kind and level with
    its interval, the direct accuracy and the corrupted-thought accuracy of the same tasks, and validity."""
    kinds, cap = thinking_kinds(config), config.quietstar.think_eval_examples
    examples = select_examples(data.heldout.examples, kinds, None, cap)  # stratified by kind and level
    if not examples:
        return {}
    if bitlinear_modules(model):  # the packed integer kernel: the same logits, 3x faster to decode (measured)
        model = packed_inference_model(model)
    report = think_report(model, data.tokenizer, examples, config.data.seq_len, config.quietstar.max_thought_tokens)
    flat: dict[str, float] = {f"think/{k}": v for k, v in report["thinking"]["overall"].items()}
    for name, table in (("think", report), ("direct", report["direct"]), ("corrupted", report["corrupted_thoughts"])):
        for kind, entry in table["kinds"].items():
            flat.update({f"think/{name}_{kind}{suffix}": entry[key] for key, suffix in
                         (("accuracy", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"), ("n", "_n"))})
            flat.update({f"think/{name}_{kind}_level_{level}": inner["accuracy"]
                         for level, inner in entry["levels"].items()})
    return flat
