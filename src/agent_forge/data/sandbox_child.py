"""The sandboxed side of the code checker: runs in its own ``python -I -S`` process, stdlib only.

Reads a JSON list of jobs ``{"program", "setup", "tests"}`` from stdin and prints one JSON line per job as
it finishes, so the parent knows how far it got if it has to kill this process. Layers of protection:
resource limits on the whole process (CPU, memory, file size, no new processes), a syntax check that
refuses imports outside a whitelist and any attribute or name that reaches interpreter internals,
builtins reduced to a whitelist, whitelisted modules replaced by copies without their module-valued
attributes, and a per-job alarm.
"""

from __future__ import annotations

import ast
import builtins
import json
import signal
import sys
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


class _Timeout(BaseException):
    """Raised by the alarm; a BaseException so that ``except Exception`` in the checked code cannot eat it."""


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


def _limit_resources(cpu_seconds: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX: the parent's timeout still applies
        return
    limits = {
        resource.RLIMIT_CPU: cpu_seconds,
        resource.RLIMIT_AS: 1 << 30,
        resource.RLIMIT_FSIZE: 0,
        resource.RLIMIT_NPROC: 0,
    }
    for which, value in limits.items():
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            continue


def main() -> None:
    request = json.loads(sys.stdin.read())
    timeout_s = float(request["timeout_s"])
    _limit_resources(int(timeout_s * len(request["jobs"])) + 2)

    def on_alarm(signum, frame):
        raise _Timeout

    signal.signal(signal.SIGALRM, on_alarm)
    safe = _safe_builtins()
    for index, job in enumerate(request["jobs"]):
        print(json.dumps({"index": index, "ok": run_job(job, safe, timeout_s)}), flush=True)


if __name__ == "__main__":
    main()
