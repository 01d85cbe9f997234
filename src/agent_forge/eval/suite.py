"""``agent-forge eval``'s engine: pick tasks (kinds, levels, a stratified count), score a model, tabulate.

Scoring is the held-out exact match of ``eval.heldout`` (teacher-forced, equal to greedy decoding), so
every model the project can call the Hugging Face way is scored alike: the float models of phases 1-3,
the BitLinear models of phases 4-6, the decoded Phase 8 model and an edge bundle behind ``RuntimeLM``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from agent_forge.data.tasks import TaskExample, apportion
from agent_forge.data.tokenizer import ForgeTokenizer
from agent_forge.eval.capability import accuracy_table
from agent_forge.eval.heldout import HeldoutSet, answers_correct

MODES = ("direct", "think", "tools")


def select_examples(examples: Sequence[TaskExample], kinds: Sequence[str] | None = None,
                    levels: Sequence[int] | None = None, n: int | None = None) -> list[TaskExample]:
    """The examples of the wanted kinds and levels; with ``n``, that many spread evenly over every
    (kind, level) group present (a group with fewer gives all it has, the rest go to the others)."""
    chosen = [e for e in examples if (not kinds or e.kind in kinds) and (not levels or e.level in levels)]
    if n is None or n >= len(chosen):
        return chosen
    groups: dict[tuple[str, int], list[TaskExample]] = {}
    for example in chosen:
        groups.setdefault((example.kind, example.level), []).append(example)
    counts = _capped_apportion(n, {key: len(group) for key, group in groups.items()})
    picked = {id(e) for key, group in groups.items() for e in group[: counts[key]]}
    return [e for e in chosen if id(e) in picked]  # keep the source order


def _capped_apportion(n: int, sizes: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """Equal shares of ``n`` over the groups, no group above its size; what a full group cannot take is
    shared again among the others."""
    counts = dict.fromkeys(sizes, 0)
    while n > 0:
        open_groups = {key: 1.0 for key in sizes if counts[key] < sizes[key]}
        if not open_groups:
            break
        share = apportion(n, open_groups)
        for key, extra in share.items():
            take = min(extra, sizes[key] - counts[key])
            counts[key] += take
            n -= take
    return counts


def direct_results(model: nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                   seq_len: int, batch_size: int = 32) -> tuple[list[TaskExample], list[bool]]:
    """The examples scored and, per example, whether the direct answer is right (exact match)."""
    heldout = HeldoutSet.build(tokenizer, examples, seq_len, max_lm_sequences=1)
    return list(heldout.examples), answers_correct(model, heldout, batch_size)


def score_examples(model: nn.Module, tokenizer: ForgeTokenizer, examples: Sequence[TaskExample],
                   seq_len: int, batch_size: int = 32) -> dict:
    """``accuracy_table`` of ``model`` on ``examples`` (direct answers, exact match)."""
    scored, correct = direct_results(model, tokenizer, examples, seq_len, batch_size)
    return {"n": len(scored), **accuracy_table(scored, correct)}
