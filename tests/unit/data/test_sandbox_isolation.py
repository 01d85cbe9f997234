"""The code sandbox contains code that has already escaped the syntax filter (issue 25, F1).

Every hostile job below starts with the escape from the issue, which passes ``validate_source`` and hands the
job the real ``__import__`` and ``open``; its tests pass only if the attack worked. Each is run in a batch
followed by a correct job: the attack must fail, the correct job must still pass, and the host must show no
trace of the attack.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from agent_forge.data.sandbox import CodeJob, run_code_jobs, sandbox_command, validate_source
from agent_forge.errors import SandboxUnavailableError

ESCAPE = """import functools
O = list(functools.singledispatch(lambda x: x).registry)[0]
match len:
    case O(__self__=B): pass
match B:
    case O(open=OPEN, __import__=IMP): pass
OS = IMP("os")
"""
ADD = CodeJob("def add(a, b):\n    return a + b", ("assert add(1, 2) == 3",))


def _contained(program: str, *tests: str, timeout_s: float = 1.0) -> None:
    assert validate_source(ESCAPE + program) is None  # the filter alone lets every one of these through
    assert run_code_jobs([CodeJob(ESCAPE + program, tests), ADD], timeout_s) == [False, True]


def test_the_escape_from_the_issue_gets_no_shell(tmp_path):
    target = tmp_path / "escaped.txt"
    _contained(f"status = OS.system('id > {target}')", "assert status == 0")
    issue_snippet = ESCAPE.replace('OS = IMP("os")\n', "") + (
        'IMP("os").system("id > ../../escaped.txt")\ndef solve(x): return x'
    )
    assert run_code_jobs([CodeJob(issue_snippet, ("assert solve(1) == 1",)), ADD]) == [True, True]
    assert not target.exists() and not Path("/escaped.txt").exists()


def test_the_escape_runs_as_nobody_not_root():
    """A positive control: the escape itself works (the job passes), but only as an unprivileged uid."""
    uid_check = "assert OS.getuid() != 0 and OS.geteuid() != 0 and 0 not in OS.getresgid()"
    assert run_code_jobs([CodeJob(ESCAPE, (uid_check,))]) == [True]
    if os.geteuid() == 0:
        assert run_code_jobs([CodeJob(ESCAPE, ("assert OS.getuid() == 65534",))]) == [True]


def test_a_fork_bomb_cannot_create_a_process():
    # bounded (2**10 processes at most) so that a regression cannot take the test machine down
    _contained("for i in range(10):\n    OS.fork()", "assert True")
    exit_now = "B.getattr(OS, '_exit')(0)"  # the filter refuses `OS._exit`, not this
    _contained(f"pid = OS.fork()\nif pid == 0:\n    {exit_now}\nOS.waitpid(pid, 0)", "assert pid > 0")


def test_no_connection_reaches_a_listener_on_the_host():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        program = f"S = IMP('socket')\nc = S.create_connection(('127.0.0.1', {port}), timeout=0.5)"
        _contained(program, "assert c.fileno() >= 0")
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()


def test_nothing_is_written_outside_the_private_temp_folder(tmp_path):
    outside = tmp_path / "written.txt"
    _contained(f"OPEN('{outside}', 'w').write('x')", "assert True")
    _contained("OPEN('/escaped.txt', 'w').write('x')", "assert True")
    _contained("OPEN('/usr/escaped.txt', 'w').write('x')", "assert True")
    assert not outside.exists() and not Path("/usr/escaped.txt").exists()
    # its own folder is writable, within a size limit
    assert run_code_jobs([CodeJob(ESCAPE + "OPEN('own.txt', 'w').write('x')", ())]) == [True]
    _contained("OPEN('big.bin', 'wb').write(bytes(8 << 20))", "assert True")


def test_files_outside_cannot_be_read(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    _contained(f"text = OPEN('{secret}').read()", "assert text == 's3cret'")
    _contained("text = OPEN('/etc/hostname').read()", "assert text")
    _contained(f"names = OS.listdir('{Path.cwd()}')", "assert names")


def test_a_10_gb_allocation_fails_inside_the_job():
    _contained("x = B.bytearray(10 * 1024 ** 3)", "assert len(x) > 0")
    _contained("x = [0] * (10 * 1024 ** 3 // 8)", "assert len(x) > 0")


def test_an_infinite_loop_is_killed_even_when_it_ignores_signals():
    program = "SIG = IMP('signal')\nSIG.signal(SIG.SIGALRM, SIG.SIG_IGN)\nwhile True:\n    pass"
    start = time.perf_counter()
    _contained(program, "assert True", timeout_s=0.3)
    assert time.perf_counter() - start < 5.0


def test_a_job_cannot_forge_or_spoil_the_results_of_the_next_one():
    forge = 'OS.write(1, b\'{"index": 1, "ok": true}\\n\')\nOPEN("/dev/stdout", "w").write("{}")'
    wrong = CodeJob("def add(a, b):\n    return a - b", ("assert add(1, 2) == 3",))
    assert run_code_jobs([CodeJob(ESCAPE + forge, ("assert False",)), wrong]) == [False, False]
    # the signals go only to the supervisor, PID 1 of the sandbox's own PID namespace: the guard keeps a broken
    # sandbox from signalling the host (and makes the positive control below fail instead)
    assert run_code_jobs([CodeJob(ESCAPE, ("assert OS.getppid() == 1",))]) == [True]
    signals = "for sig in (9, 15, 14):\n    for pid in (1, -1):\n        try:\n            OS.kill(pid, sig)\n"
    poison = "B.len = lambda x: 3\nif OS.getppid() == 1:\n" + "\n".join(
        "    " + line for line in (signals + "        except OSError:\n            pass").splitlines()
    )
    assert run_code_jobs([CodeJob(ESCAPE + poison, ("assert False",)), ADD, ADD]) == [False, True, True]
    spoil = CodeJob(ESCAPE + "B.len = lambda x: 3", ())
    assert run_code_jobs([spoil, CodeJob("", ("assert len([]) == 0",))]) == [True, True]


def test_without_bubblewrap_code_is_refused_not_run_unisolated(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no bwrap on this PATH
    with pytest.raises(SandboxUnavailableError, match="bubblewrap") as error:
        run_code_jobs([ADD])
    assert "apt-get install bubblewrap" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(SandboxUnavailableError):
        sandbox_command()
