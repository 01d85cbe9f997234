"""The seven reasoning strategies of Phase 3 (spec 2.3): their marker tokens and their opening phrases.

Each strategy has a reserved special token (D3, ``SPECIAL_TOKENS``) that opens the thought, and a few
opening phrases shipped as package data (``reasoning/prompts/<token>.txt``, one phrase per line, ``#``
lines are comments), so the surface text varies while the content always comes from the task itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources


@dataclass(frozen=True)
class Strategy:
    """One strategy: its name, its marker token and the prompt file of its opening phrases."""

    name: str
    token: str

    @property
    def prompt_file(self) -> str:
        return self.token.strip("<>") + ".txt"


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("mece", "<mece>"),
    Strategy("falsification", "<falsify>"),
    Strategy("expert", "<expert>"),
    Strategy("orthogonal", "<ortho>"),
    Strategy("self_doubt", "<doubt>"),
    Strategy("bayesian", "<bayes>"),
    Strategy("multi_domain", "<domain>"),
)
STRATEGY_NAMES: tuple[str, ...] = tuple(s.name for s in STRATEGIES)
THINK_OPEN, THINK_CLOSE, STEP = "<think>", "</think>", "<step>"


def strategy(name: str) -> Strategy:
    for item in STRATEGIES:
        if item.name == name:
            return item
    raise KeyError(f"unknown strategy '{name}'; known: {', '.join(STRATEGY_NAMES)}")


@cache
def opening_phrases(name: str) -> tuple[str, ...]:
    """The opening phrases of a strategy, read from its package data file."""
    text = (
        resources.files("agent_forge.reasoning")
        .joinpath("prompts", strategy(name).prompt_file)
        .read_text(encoding="utf-8")
    )
    phrases = tuple(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))
    if not phrases:
        raise ValueError(f"prompt file of strategy '{name}' has no phrase")
    return phrases


@lru_cache(maxsize=1)
def phrase_words() -> frozenset[str]:
    """Every word the opening phrases use: scaffolding, not content, when relevance is measured."""
    words: set[str] = set()
    for item in STRATEGIES:
        for phrase in opening_phrases(item.name):
            words.update(w for w in _words(phrase) if not w.startswith("{"))
    return frozenset(words)


def _words(text: str) -> list[str]:
    return [w.strip(".,:;?!()").lower() for w in text.split() if w.strip(".,:;?!()")]
