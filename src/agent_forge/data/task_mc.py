"""Multiple-choice questions in the style of ARC-Easy/PIQA, answerable from the built-in fact tables.

Each family returns a question, its choices and the index of the single right one; this module shuffles
the choices, labels them A-D and varies the layout. Levels widen the families, the number of choices
(2 at level 1, 3 at level 2, 4 from level 3) and the size of the numbers compared.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from agent_forge.data.wordlists import CATEGORIES, GOALS, ORDERED_FACTS, PROPERTIES

LABELS = "ABCD"

Question = tuple[str, str, list[str]]  # (question, right choice, wrong choices)


def _category(rng: random.Random, n_wrong: int, level: int) -> Question:
    category, others = _pick_category(rng, n_wrong)
    template = rng.choice(
        (
            "Which of these is {a} {c}?",
            "Which one is {a} {c}?",
            "Which word names {a} {c}?",
            "Pick the {c}.",
            "Which item in the list is {a} {c}?",
        )
    )
    wrong = [rng.choice(CATEGORIES[other]) for other in others]
    return template.format(a=_article(category), c=category), rng.choice(CATEGORIES[category]), wrong


def _not_category(rng: random.Random, n_wrong: int, level: int) -> Question:
    category, others = _pick_category(rng, 1)
    template = rng.choice(
        (
            "Which of these is not {a} {c}?",
            "Which one is NOT {a} {c}?",
            "Which word does not name {a} {c}?",
            "Which item is the odd one out?",
        )
    )
    members = rng.sample(CATEGORIES[category], n_wrong)
    return template.format(a=_article(category), c=category), rng.choice(CATEGORIES[others[0]]), members


def _article(noun: str) -> str:
    return "an" if noun[0] in "aeiou" else "a"


def _pick_category(rng: random.Random, n_others: int) -> tuple[str, list[str]]:
    names = rng.sample(sorted(CATEGORIES), n_others + 1)
    return names[0], names[1:]


def _property(rng: random.Random, n_wrong: int, level: int) -> Question:
    questions, having, lacking = rng.choice(PROPERTIES)
    if level >= 5 and rng.random() < 0.5:
        negated = rng.choice(questions) + rng.choice(
            (" Pick the one that does NOT.", " Choose the exception.")
        )
        return negated, rng.choice(lacking), rng.sample(having, n_wrong)
    return rng.choice(questions), rng.choice(having), rng.sample(lacking, n_wrong)


def _goal(rng: random.Random, n_wrong: int, level: int) -> Question:
    goal, right, wrong = rng.choice(GOALS)
    template = rng.choice(
        (
            "To {g}, what should you use?",
            "What is the best way to {g}?",
            "Goal: {g}. Which choice works?",
            "You want to {g}. What helps most?",
        )
    )
    return template.format(g=goal), right, rng.sample(wrong, n_wrong)


def _ordered(rng: random.Random, n_wrong: int, level: int) -> Question:
    most, least, items = rng.choice(ORDERED_FACTS)
    picked = sorted(rng.sample(range(len(items)), n_wrong + 1))
    if rng.random() < 0.5:
        return most, items[picked[-1]], [items[i] for i in picked[:-1]]
    return least, items[picked[0]], [items[i] for i in picked[1:]]


def _numbers(rng: random.Random, n_wrong: int, level: int) -> Question:
    high = 10 ** min(level, 4) - 1
    values = rng.sample(range(0, high + 1), n_wrong + 1)
    if rng.random() < 0.5:
        question = rng.choice(
            ("Which number is the largest?", "Which number is the greatest?", "Which is the biggest number?")
        )
        right = max(values)
    else:
        question = rng.choice(
            ("Which number is the smallest?", "Which number is the least?", "Which is the lowest number?")
        )
        right = min(values)
    return question, str(right), [str(v) for v in values if v != right]


def _expressions(rng: random.Random, n_wrong: int, level: int) -> Question:
    """Compare products and sums: the model must evaluate, not just read digits."""
    seen: dict[int, str] = {}
    while len(seen) < n_wrong + 1:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        text, value = (f"{a} * {b}", a * b) if rng.random() < 0.5 else (f"{a} + {b}", a + b)
        seen.setdefault(value, text)
    best = max(seen)
    question = rng.choice(("Which expression has the largest value?", "Which of these is the greatest?"))
    return question, seen[best], [text for value, text in seen.items() if value != best]


def _multiples(rng: random.Random, n_wrong: int, level: int) -> Question:
    k = rng.randint(2, 9)
    right = k * rng.randint(2, 12)
    wrong = rng.sample([v for v in range(4, 120) if v % k], n_wrong)
    question = rng.choice(
        (f"Which number is a multiple of {k}?", f"Which number can be divided by {k} evenly?")
    )
    return question, str(right), [str(v) for v in wrong]


Family = Callable[[random.Random, int, int], Question]
_FAMILIES_BY_LEVEL: dict[int, tuple[Family, ...]] = {
    1: (_category, _numbers),
    2: (_category, _property, _goal, _numbers),
    3: (_category, _property, _goal, _ordered, _numbers),
    4: (_property, _goal, _ordered, _not_category, _expressions, _numbers),
    5: (_property, _goal, _ordered, _not_category, _expressions, _multiples),
}


def generate_mc(rng: random.Random, level: int) -> tuple[str, str, dict]:
    """One question: (prompt with labelled choices ending in "Answer:", answer like " B", meta)."""
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    n_choices = min(4, level + 1)
    family = rng.choice(_FAMILIES_BY_LEVEL[min(level, 5)])
    question, right, wrong = family(rng, n_choices - 1, level)
    choices = [right, *wrong]
    rng.shuffle(choices)
    answer_index = choices.index(right)
    prompt = _layout(rng, question, choices)
    meta = {
        "source": "builtin",
        "family": family.__name__.lstrip("_"),
        "question": question,
        "choices": choices,
        "labels": list(LABELS[:n_choices]),
        "answer_index": answer_index,
    }
    return prompt, f" {LABELS[answer_index]}", meta


def _layout(rng: random.Random, question: str, choices: list[str]) -> str:
    head = rng.choice(("Question: {q}", "Q: {q}", "{q}")).format(q=question)
    style = rng.choice(("{l}. {c}", "{l}) {c}", "({l}) {c}"))
    lines = [style.format(l=LABELS[i], c=choice) for i, choice in enumerate(choices)]
    return "\n".join([head, *lines, "Answer:"])
