"""Arithmetic word problems in the style of GSM8K/SVAMP, with their step-by-step equations.

A story keeps one running total (someone's count of an object); every event sentence changes it by one
operation and records the equation, so Phase 3 can check the numbers in a thought against the steps.
Levels add digits, steps, multiplication/division and distractor sentences that carry unused numbers.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agent_forge.data.wordlists import CONTAINERS, COUNTABLE_OBJECTS, PEOPLE


@dataclass(frozen=True)
class ArithLevel:
    """How hard a problem is: steps, number sizes, which operations, how many distractor sentences."""

    steps: int
    max_start: int
    max_operand: int
    operations: tuple[str, ...]
    distractors: int


_LEVELS: dict[int, ArithLevel] = {
    1: ArithLevel(1, 9, 9, ("add", "sub"), 0),
    2: ArithLevel(2, 99, 40, ("add", "sub"), 0),
    3: ArithLevel(2, 99, 40, ("add", "sub", "groups", "times"), 1),
    4: ArithLevel(3, 999, 99, ("add", "sub", "groups", "times", "share"), 1),
    5: ArithLevel(4, 999, 99, ("add", "sub", "groups", "times", "share"), 2),
}
_TOTAL_CAP = 9999


def arith_level(level: int) -> ArithLevel:
    """Levels above 5 keep growing in steps and distractors so a larger max_level stays meaningful."""
    if level < 1:
        raise ValueError(f"level must be >= 1, got {level}")
    if level in _LEVELS:
        return _LEVELS[level]
    top = _LEVELS[5]
    return ArithLevel(level - 1, 9999, 999, top.operations, level - 3)


_OPENINGS = (
    "{Name} has {a} {obj}.",
    "{Name} starts with {a} {obj}.",
    "At first, {name} has {a} {obj}.",
    "{Name} owns {a} {obj}.",
    "There are {a} {obj} in {name}'s room.",
    "{Name} keeps {a} {obj} in a drawer.",
    "In the morning, {name} counts {a} {obj}.",
)
_EVENTS: dict[str, tuple[str, ...]] = {
    "add": (
        "{Pro} finds {k} more {obj}.",
        "{Other} gives {name} {k} {obj}.",
        "Then {pro} buys {k} more {obj}.",
        "{Name} gets {k} more {obj} from {other}.",
        "Later, {pro} receives {k} {obj}.",
        "{Name} picks up another {k} {obj}.",
    ),
    "sub": (
        "{Pro} gives {k} {obj} to {other}.",
        "{Name} loses {k} of the {obj}.",
        "Then {pro} sells {k} {obj}.",
        "{Other} takes {k} {obj} from {name}.",
        "{Name} uses {k} of the {obj}.",
        "Later, {pro} gives away {k} {obj}.",
    ),
    "groups": (
        "{Pro} buys {g} {box} of {obj} with {m} {obj} in each.",
        "{Other} gives {name} {g} {box} that hold {m} {obj} each.",
        "Then {name} gets {g} {box} with {m} {obj} in every one.",
    ),
    "times": (
        "Then the number of {obj} {pro} has becomes {k} times as large.",
        "{Name} ends up with {k} times as many {obj} as before.",
        "After a trade, {name} has {k} times the {obj} {pro} had.",
    ),
    "share": (
        "{Pro} splits the {obj} into {k} equal piles and keeps one pile.",
        "{Name} puts the {obj} into {k} equal stacks and keeps only one stack.",
        "{Name} divides the {obj} into {k} equal groups and keeps just one group.",
    ),
}
_QUESTIONS = (
    "How many {obj} does {name} have now?",
    "How many {obj} does {name} have in the end?",
    "How many {obj} does {pro} have now?",
    "What is the number of {obj} {name} has now?",
    "Now how many {obj} does {name} have?",
    "How many {obj} are with {name} at the end?",
)
_DISTRACTORS = (
    "{Other} has {d} {obj2}.",
    "{Name} is {age} years old.",
    "It takes {d} minutes to walk to the store.",
    "{Other} owns {d} {obj}.",
    "There are {d} {obj2} in the park.",
    "The shop opens at {h} o'clock.",
    "{Other} read {d} pages of a book.",
)


@dataclass
class _Story:
    total: int
    sentences: list[str]
    steps: list[str]
    operands: list[int]


def _apply_event(rng: random.Random, spec: ArithLevel, story: _Story, words: dict) -> None:
    """Pick an operation that keeps the total a positive integer, then narrate it."""
    options = [op for op in spec.operations if _fits(op, story.total)]
    op = rng.choice(options)
    before, values = story.total, dict(words)
    if op == "add":
        k = values["k"] = rng.randint(2, spec.max_operand)
        story.total += k
        story.steps.append(f"{before} + {k} = {story.total}")
    elif op == "sub":
        k = values["k"] = rng.randint(2, min(before - 1, spec.max_operand))
        story.total -= k
        story.steps.append(f"{before} - {k} = {story.total}")
    elif op == "groups":
        g, m = rng.randint(2, 6), rng.randint(2, min(12, spec.max_operand))
        values.update(g=g, m=m, box=rng.choice(CONTAINERS))
        story.total += g * m
        story.steps += [f"{g} * {m} = {g * m}", f"{before} + {g * m} = {story.total}"]
        story.operands.append(g)
        k = m
    elif op == "times":
        k = values["k"] = rng.randint(2, 4)
        story.total *= k
        story.steps.append(f"{before} * {k} = {story.total}")
    else:
        k = values["k"] = rng.choice([d for d in range(2, 10) if before % d == 0 and before > d])
        story.total //= k
        story.steps.append(f"{before} / {k} = {story.total}")
    story.operands.append(k)
    story.sentences.append(_fill(rng.choice(_EVENTS[op]), values))


def _fits(op: str, total: int) -> bool:
    if op == "sub":
        return total >= 3
    if op in ("groups", "times"):
        return total * 4 <= _TOTAL_CAP
    if op == "share":
        return any(total % d == 0 and total > d for d in range(2, 10))
    return True


def _fill(template: str, values: dict) -> str:
    text = template.format(**values)
    return text[0].upper() + text[1:]


def _words(rng: random.Random) -> dict:
    name, pro, pos = rng.choice(PEOPLE)
    other = rng.choice([person for person in PEOPLE if person[1] != pro])  # keeps "he"/"she" unambiguous
    obj, obj2 = rng.sample(COUNTABLE_OBJECTS, 2)
    return {
        "name": name,
        "Name": name,
        "pro": pro,
        "Pro": pro.capitalize(),
        "pos": pos,
        "other": other[0],
        "Other": other[0],
        "obj": obj,
        "obj2": obj2,
    }


def generate_arith(rng: random.Random, level: int) -> tuple[str, str, dict]:
    """One problem: (prompt ending in the answer cue, answer like " 12", verification meta)."""
    spec = arith_level(level)
    words = _words(rng)
    start = rng.randint(2 if spec.max_start < 10 else 10, spec.max_start)
    story = _Story(start, [_fill(rng.choice(_OPENINGS), {**words, "a": start})], [], [start])
    for _ in range(spec.steps):
        _apply_event(rng, spec, story, words)
    distractor_numbers = []
    for _ in range(spec.distractors):
        numbers = {
            "d": rng.randint(2, spec.max_operand + 10),
            "h": rng.randint(7, 11),
            "age": rng.randint(6, 80),
        }
        template = rng.choice(_DISTRACTORS)
        story.sentences.insert(rng.randint(1, len(story.sentences)), _fill(template, {**words, **numbers}))
        distractor_numbers += [value for key, value in numbers.items() if "{" + key + "}" in template]
    question = _fill(rng.choice(_QUESTIONS), words)
    prompt = " ".join([*story.sentences, question]) + rng.choice(("\nAnswer:", " Answer:"))
    meta = {
        "source": "builtin",
        "operands": story.operands,
        "steps": story.steps,
        "distractor_numbers": distractor_numbers,
        "result": story.total,
    }
    return prompt, f" {story.total}", meta
