"""The code checker runs untrusted code in a restricted child process and still gets right answers right."""

from __future__ import annotations

import time

import pytest

from agent_forge.data.sandbox import CodeJob, check_code_answers, run_code_jobs, validate_source
from agent_forge.data.tasks import make_example

ADD = "def add(a, b):\n    return a + b"
ADD_TESTS = ("assert add(1, 2) == 3", "assert add(-1, 1) == 0")


def test_right_program_passes_wrong_program_fails():
    jobs = [CodeJob(ADD, ADD_TESTS), CodeJob("def add(a, b):\n    return a - b", ADD_TESTS)]
    assert run_code_jobs(jobs) == [True, False]


def test_equivalent_but_different_answer_passes():
    example = make_example(
        "code", 1, "def add_three(x):\n    return", " x + 3",
        {"code_prefix": "def add_three(x):\n    return", "tests": ["assert add_three(1) == 4"]},
    )  # fmt: skip
    assert check_code_answers([example, example, example], [" 3 + x", " x + 3", " x + 4"]) == [
        True,
        True,
        False,
    ]


@pytest.mark.parametrize(
    "forbidden_line",
    [
        "import os",
        "().__class__.__base__.__subclasses__()",
        "open('/dev/null')",
        "__import__('os')",
        "eval('1 + 1')",
        "getattr(a, 'real')",
        "(x for x in [1]).gi_frame",
        "exec('pass')",
    ],
)
def test_escapes_and_forbidden_calls_fail(forbidden_line):
    """Each program would pass its tests in a plain interpreter; only the restrictions fail it."""
    program = f"def add(a, b):\n    {forbidden_line}\n    return a + b"
    assert run_code_jobs([CodeJob(program, ADD_TESTS)]) == [False]
    exec(program + "\nassert add(1, 2) == 3", {})  # the same code is otherwise correct


def test_validation_names_the_reason():
    assert validate_source(ADD) is None
    assert "import" in validate_source("import subprocess")
    assert "attribute" in validate_source("x = (1).__class__")
    assert "syntax" in validate_source("def broken(:")


def test_whitelisted_imports_work_like_mbpp_needs():
    program = (
        "import math\nfrom collections import Counter\ndef f(s):\n    return math.isqrt(len(Counter(s)))"
    )
    assert run_code_jobs([CodeJob(program, ("assert f('aaaabbbbcccc') == 1",))]) == [True]
    # module copies drop module-valued attributes, so no route to os through a whitelisted module
    assert run_code_jobs([CodeJob("import collections\nx = collections.abc", ())]) == [False]


def test_a_hanging_program_times_out_and_the_next_job_still_runs():
    jobs = [CodeJob("def f():\n    while True:\n        pass", ("assert f()",)), CodeJob(ADD, ADD_TESTS)]
    start = time.perf_counter()
    assert run_code_jobs(jobs, timeout_s=0.3) == [False, True]
    assert time.perf_counter() - start < 3.0


def test_a_program_stuck_in_c_code_is_killed_and_the_rest_rerun():
    stuck = CodeJob("def f():\n    return sum(range(10 ** 13))", ("assert f()",))
    start = time.perf_counter()
    assert run_code_jobs([stuck, CodeJob(ADD, ADD_TESTS)], timeout_s=0.2) == [False, True]
    assert time.perf_counter() - start < 8.0


def test_exceptions_and_bare_except_do_not_hide_failures():
    catches_all = (
        "def f():\n    try:\n        while True:\n            pass\n    except Exception:\n        return 1"
    )
    assert run_code_jobs([CodeJob(catches_all, ("assert f() == 1",))], timeout_s=0.3) == [False]
    assert run_code_jobs([CodeJob("def f():\n    return 1 / 0", ("assert f()",))]) == [False]


def test_non_code_examples_are_never_marked_passed():
    example = make_example("arith", 1, "1 + 1 =", " 2", {})
    assert check_code_answers([example], [" 2"]) == [False]
