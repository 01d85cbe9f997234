"""Map rows of real datasets, in the Hugging Face Hub's own column format, to ``TaskExample``s.

The prompts follow the same layouts as the built-in generators (``Question: ...`` with labelled choices,
word problems ending in ``Answer:``, code after ``Answer:``), so a model trained on one can be measured
on the other. Answers are normalised the way the built-in ones are written: a leading space and a plain
integer for math (GSM8K's ``#### 1,200`` becomes `` 1200``), a leading space and a letter for choices.
A row that cannot be mapped (unlabelled, malformed) gives ``None`` and is skipped.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

from agent_forge.data.tasks import TaskExample, make_example

Row = Mapping[str, Any]
_LETTERS = "ABCDEFGH"
_CALCULATOR = re.compile(r"<<([^=<>]+)=([^<>]+)>>")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def format_number(value: Any) -> str | None:
    """``72.0`` -> ``"72"``, ``"1,200"`` -> ``"1200"``, ``2.5`` -> ``"2.5"``; None if not a number."""
    try:
        number = float(str(value).replace(",", "").replace("$", "").strip())
    except ValueError:
        return None
    return str(int(number)) if number.is_integer() else repr(number)


def _equation(expression: str, result: str) -> str:
    spaced = re.sub(r"\s*([-+*/])\s*", r" \1 ", expression.strip()).strip()
    return f"{spaced} = {result.strip()}"


def expression_steps(expression: str) -> list[str]:
    """``( ( 15.0 + 6.0 ) - 4.0 )`` -> ``["15 + 6 = 21", "21 - 4 = 17"]``; [] if not plain arithmetic."""
    try:
        tree = ast.parse(expression, mode="eval").body
        steps: list[str] = []
        _evaluate_node(tree, steps)
    except (SyntaxError, ValueError, ZeroDivisionError):
        return []
    return steps


def _evaluate_node(node: ast.expr, steps: list[str]) -> float:
    """Evaluate +, -, *, / over number literals, recording one equation per operation."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
        return float(node.value)
    if not isinstance(node, ast.BinOp) or type(node.op) not in _OPERATORS:
        raise ValueError("not plain arithmetic")
    left, right = _evaluate_node(node.left, steps), _evaluate_node(node.right, steps)
    symbol, apply = _OPERATORS[type(node.op)]
    result = apply(left, right)
    steps.append(f"{format_number(left)} {symbol} {format_number(right)} = {format_number(result)}")
    return result


_OPERATORS: dict[type, tuple[str, Callable[[float, float], float]]] = {
    ast.Add: ("+", lambda a, b: a + b),
    ast.Sub: ("-", lambda a, b: a - b),
    ast.Mult: ("*", lambda a, b: a * b),
    ast.Div: ("/", lambda a, b: a / b),
}


def _level_from_steps(n_steps: int) -> int:
    return min(max(n_steps, 1), 5)


def _choice_prompt(question: str, choices: list[str]) -> str:
    lines = [f"{_LETTERS[i]}. {choice}" for i, choice in enumerate(choices)]
    return "\n".join([f"Question: {question.strip()}", *lines, "Answer:"])


def _choice_example(
    source: str, question: str, choices: list[str], answer_index: int, extra: dict
) -> TaskExample:
    meta = {
        "source": source,
        "question": question,
        "choices": choices,
        "labels": list(_LETTERS[: len(choices)]),
        "answer_index": answer_index,
        **extra,
    }
    return make_example("mc", 1, _choice_prompt(question, choices), f" {_LETTERS[answer_index]}", meta)


def arc_easy(row: Row) -> TaskExample | None:
    """allenai/ai2_arc: question, choices {text, label}, answerKey (letters, or digits in a few rows)."""
    texts, labels = list(row["choices"]["text"]), [str(x) for x in row["choices"]["label"]]
    key = str(row.get("answerKey", "")).strip()
    if key not in labels or not 2 <= len(texts) <= len(_LETTERS):
        return None
    return _choice_example("arc_easy", row["question"], texts, labels.index(key), {"id": row.get("id")})


def piqa(row: Row) -> TaskExample | None:
    """ybisk/piqa: goal, sol1, sol2, label (0 or 1; -1 in the unlabelled test split)."""
    label = int(row.get("label", -1))
    if label not in (0, 1):
        return None
    return _choice_example("piqa", row["goal"], [row["sol1"], row["sol2"]], label, {})


def gsm8k(row: Row) -> TaskExample | None:
    """openai/gsm8k: question, answer = worked solution with <<a*b=c>> notes, then ``#### final``."""
    solution, _, final = str(row["answer"]).rpartition("####")
    number = format_number(final)
    if not solution or number is None:
        return None
    steps = [_equation(lhs, rhs) for lhs, rhs in _CALCULATOR.findall(solution)]
    meta = {
        "source": "gsm8k",
        "steps": steps,
        "operands": [format_number(x) for x in _NUMBER.findall(str(row["question"]))],
        "solution": _CALCULATOR.sub("", solution).strip(),
        "result": number,
    }
    return make_example(
        "arith", _level_from_steps(len(steps)), f"{row['question'].strip()}\nAnswer:", f" {number}", meta
    )


def svamp(row: Row) -> TaskExample | None:
    """ChilleD/SVAMP: Body, Question, Equation (prefix-free, e.g. ``( 8.0 - 3.0 )``), Answer (float)."""
    number = format_number(row["Answer"])
    if number is None:
        return None
    equation = str(row.get("Equation", "")).strip()
    steps = expression_steps(equation)
    meta = {
        "source": "svamp",
        "steps": steps,
        "operands": [format_number(x) for x in _NUMBER.findall(equation)],
        "type": row.get("Type"),
        "result": number,
    }
    prompt = f"{str(row['Body']).strip()} {str(row['Question']).strip()}\nAnswer:"
    return make_example("arith", _level_from_steps(len(steps)), prompt, f" {number}", meta)


def mbpp(row: Row) -> TaskExample | None:
    """mbpp: ``full`` (text, test_setup_code) or ``sanitized`` (prompt, test_imports)."""
    description = row.get("text") or row.get("prompt")
    tests = [str(t) for t in row.get("test_list") or []]
    if not description or not tests or not row.get("code"):
        return None
    code = str(row["code"]).replace("\r\n", "\n").replace("\t", "    ").strip()
    setup = [str(line) for line in row.get("test_imports") or []]
    setup += [line for line in str(row.get("test_setup_code") or "").splitlines() if line.strip()]
    prompt = "\n".join([str(description).strip(), "Your code should pass these tests:", *tests, "Answer:"])
    meta = {
        "source": "mbpp",
        "task_id": row.get("task_id"),
        "code_prefix": "",
        "tests": tests,
        "test_setup": setup,
    }
    return make_example("code", 1, prompt, "\n" + code, meta)


ADAPTERS: dict[str, Callable[[Row], TaskExample | None]] = {
    "arc_easy": arc_easy,
    "gsm8k": gsm8k,
    "mbpp": mbpp,
    "piqa": piqa,
    "svamp": svamp,
}

COLUMNS: dict[str, str] = {
    "arc_easy": "question, choices {text, label}, answerKey",
    "gsm8k": "question, answer ending in '#### <number>'",
    "mbpp": "text or prompt, code, test_list",
    "piqa": "goal, sol1, sol2, label",
    "svamp": "Body, Question, Equation, Answer",
}
