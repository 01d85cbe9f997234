"""Write the inside of a ``<think>`` block for one task with one strategy.

The strategy decides the order and the framing (which facts first, a refuted alternative, a check, a
posterior); the facts themselves come from ``evidence.task_evidence``, so every equation, comparison,
verdict and test case in a thought is true for its task.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from agent_forge.reasoning.evidence import DOMAINS, Evidence
from agent_forge.reasoning.strategies import STEP, opening_phrases, strategy


def _steps(items: list[str]) -> str:
    return "".join(f"{STEP}{item}" for item in items)


def _mece(ev: Evidence, opener: str) -> str:
    unused = f"{STEP}unused: {', '.join(ev.unused)}" if ev.unused else ""
    return opener + _steps(ev.steps) + unused


def _falsify(ev: Evidence, opener: str) -> str:
    return opener + _steps(ev.steps) + f"{STEP}{ev.conclusion}, not {ev.alternative}"


def _expert(ev: Evidence, opener: str) -> str:
    return opener + _steps(ev.steps) + f"{STEP}so {ev.conclusion}"


def _ortho(ev: Evidence, opener: str) -> str:
    return opener + _steps(ev.reverse) + f"{STEP}so {ev.conclusion}"


def _doubt(ev: Evidence, opener: str) -> str:
    return opener + _steps(ev.steps) + f"{STEP}really? {ev.check} ok"


def _bayes(ev: Evidence, opener: str) -> str:
    return opener + _steps(ev.steps) + f"{STEP}posterior: {ev.conclusion}"


def _domain(ev: Evidence, opener: str) -> str:
    return opener + _steps(ev.steps) + f"{STEP}so {ev.conclusion}"


_WRITERS: dict[str, Callable[[Evidence, str], str]] = {
    "mece": _mece,
    "falsification": _falsify,
    "expert": _expert,
    "orthogonal": _ortho,
    "self_doubt": _doubt,
    "bayesian": _bayes,
    "multi_domain": _domain,
}


def write_thought(evidence: Evidence, strategy_name: str, rng: random.Random) -> str:
    """The thought text (without ``<think>``/``</think>``): marker token, opening phrase, facts."""
    opener = rng.choice(opening_phrases(strategy_name)).format(
        alt=evidence.alternative, ans=evidence.conclusion, domain=DOMAINS.get(evidence.kind, "elsewhere")
    )
    return strategy(strategy_name).token + " " + _WRITERS[strategy_name](evidence, opener)
