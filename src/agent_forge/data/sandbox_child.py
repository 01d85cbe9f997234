"""The sandboxed side of the code checker: a supervisor that runs inside bubblewrap, stdlib only.

``sandbox.py`` starts this file (``python -I -S -c``) inside a bubblewrap sandbox: new network, PID, IPC and
UTS namespaces, a read-only filesystem holding only the interpreter and a small private ``/tmp``, no
environment. The supervisor first drops to an unprivileged uid (when started as root it holds only
CAP_SETUID/CAP_SETGID for this), sets no_new_privs and makes itself undumpable, then reads a JSON list of jobs
``{"program", "setup", "tests"}`` from stdin. Each job runs in a forked worker that can create no process,
write no output, use at most 1 GiB and is killed at its deadline; its exit status is its result, so a job
can neither forge another job's result nor leave state behind for it. One JSON line per job goes to stdout
as it finishes. The syntax check and reduced builtins below are a further layer, not the isolation.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import select
import shutil
import signal
import sys
import time
import types

SAFE_BUILTINS = (
    "abs",
    "all",
    "any",
    "bool",
    "chr",
    "dict",
    "divmod",
    "enumerate",
    "filter",
    "float",
    "frozenset",
    "int",
    "isinstance",
    "len",
    "list",
    "map",
    "max",
    "min",
    "ord",
    "pow",
    "range",
    "reversed",
    "round",
    "set",
    "sorted",
    "str",
    "sum",
    "tuple",
    "zip",
    "slice",
    "hash",
    "bin",
    "hex",
    "oct",
    "iter",
    "next",
    "Exception",
    "ValueError",
    "TypeError",
    "KeyError",
    "IndexError",
    "ZeroDivisionError",
    "AssertionError",
    "StopIteration",
    "ArithmeticError",
    "RuntimeError",
)
ALLOWED_MODULES = ("math", "re", "heapq", "collections", "itertools", "functools", "bisect", "cmath")
_FORBIDDEN_PREFIXES = ("_", "gi_", "f_", "tb_", "cr_", "ag_", "co_", "func_")
_FORBIDDEN_NAMES = frozenset({"mro", "format_map"})
NOBODY = 65534
READY = '{"ready": true}'
WORKER_MEMORY_BYTES = 1 << 30
WORKER_FILE_BYTES = 1 << 20
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in the checked code cannot eat it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _Timeout


def _forbidden(identifier: str) -> bool:
    return identifier.startswith(_FORBIDDEN_PREFIXES) or identifier in _FORBIDDEN_NAMES


def validate_source(source: str) -> str | None:
    """The reason a snippet is refused, or None when it may run."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        return f"syntax error: {exc.__class__.__name__}"
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
            if any(m not in ALLOWED_MODULES for m in modules) or getattr(node, "level", 0):
                return f"import of {modules} is not allowed"
        elif isinstance(node, ast.Attribute) and _forbidden(node.attr):
            return f"attribute {node.attr} is not allowed"
        elif isinstance(node, ast.Name) and _forbidden(node.id):
            return f"name {node.id} is not allowed"
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            return "global/nonlocal is not allowed"
    return None


def _module_copy(name: str) -> types.SimpleNamespace:
    module = __import__(name)
    public = {k: v for k, v in vars(module).items() if not k.startswith("_")}
    return types.SimpleNamespace(**{k: v for k, v in public.items() if not isinstance(v, types.ModuleType)})


def _safe_builtins() -> dict:
    modules = {name: _module_copy(name) for name in ALLOWED_MODULES}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if name not in modules or level:
            raise ImportError(f"import of {name} is not allowed")
        return modules[name]

    safe = {name: getattr(builtins, name) for name in SAFE_BUILTINS}
    safe.update(
        __import__=guarded_import, __build_class__=builtins.__build_class__, print=lambda *a, **k: None
    )
    return safe


def run_job(job: dict, safe: dict, timeout_s: float) -> bool:
    """True when the program and every test run without error inside the time limit."""
    sources = [job["program"], *job.get("setup", []), *job["tests"]]
    if any(validate_source(source) is not None for source in sources):
        return False
    namespace = {"__builtins__": safe, "__name__": "solution"}
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        for source in sources:
            exec(compile(source, "<solution>", "exec"), namespace)
        return True
    except (_Timeout, Exception):
        return False
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def drop_privileges() -> None:
    """Become ``nobody`` when started as root, then forbid regaining privileges and being traced.

    Raises SystemExit when the process still holds a root id afterwards: no job may run then.
    """
    import ctypes

    if 0 in os.getresuid() or 0 in os.getresgid():
        os.setgroups([])
        os.setresgid(NOBODY, NOBODY, NOBODY)
        os.setresuid(NOBODY, NOBODY, NOBODY)  # clears every capability: no SECBIT_KEEP_CAPS is set
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) or libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0):
        raise SystemExit(f"sandbox: prctl failed (errno {ctypes.get_errno()})")
    if 0 in os.getresuid() or 0 in os.getresgid():
        raise SystemExit("sandbox: still running as root")


def _confine_worker(timeout_s: float, workdir: str) -> None:
    """Limits of a worker before it touches its job; any failure here raises, so the job never runs."""
    import resource

    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the job cannot write result lines or flood the parent
        os.dup2(devnull, fd)
    os.closerange(3, 1 << 16)
    os.chdir(workdir)
    limits = {
        resource.RLIMIT_NPROC: 0,  # effective because the uid is not root (the kernel exempts root)
        resource.RLIMIT_AS: WORKER_MEMORY_BYTES,
        resource.RLIMIT_CPU: int(timeout_s) + 1,
        resource.RLIMIT_FSIZE: WORKER_FILE_BYTES,
        resource.RLIMIT_NOFILE: 32,
        resource.RLIMIT_CORE: 0,
    }
    for which, value in limits.items():
        resource.setrlimit(which, (value, value))


def _worker(job: dict, safe: dict, timeout_s: float, workdir: str) -> None:
    """Run one job in this forked process and exit 0 when it passed; never returns."""
    code = 1
    try:
        _confine_worker(timeout_s, workdir)
        signal.signal(signal.SIGALRM, _on_alarm)  # a catchable deadline just before the supervisor's kill
        code = 0 if run_job(job, safe, timeout_s) else 1
    finally:
        os._exit(code)  # also on SystemExit/KeyboardInterrupt raised by the job


def _wait_or_kill(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for the worker; kill it at the deadline. True when it exited with 0."""
    deadline = time.monotonic() + timeout_s
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # kernel < 5.3: poll instead
        pidfd = None
    if pidfd is not None:
        select.select([pidfd], [], [], timeout_s)
        os.close(pidfd)
    reaped, status = os.waitpid(pid, os.WNOHANG)
    while not reaped and pidfd is None and time.monotonic() < deadline:
        time.sleep(0.002)
        reaped, status = os.waitpid(pid, os.WNOHANG)
    if not reaped:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return False
    return os.waitstatus_to_exitcode(status) == 0


def run_isolated(job: dict, safe: dict, timeout_s: float, index: int) -> bool:
    """Fork a worker for one job in a fresh folder under the private /tmp, then remove the folder."""
    workdir = f"/tmp/job{index}"
    os.mkdir(workdir, 0o700)
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        _worker(job, safe, timeout_s, workdir)
    try:
        return _wait_or_kill(pid, timeout_s)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    drop_privileges()
    request = json.loads(sys.stdin.read())
    timeout_s = float(request["timeout_s"])
    safe = _safe_builtins()
    print(READY, flush=True)
    for index, job in enumerate(request["jobs"]):
        print(json.dumps({"index": index, "ok": run_isolated(job, safe, timeout_s, index)}), flush=True)


if __name__ == "__main__":
    main()
