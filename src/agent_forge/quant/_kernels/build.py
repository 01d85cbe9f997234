"""Build the ternary C kernel with the machine's C compiler on first use, cache it, load it with ctypes.

The shared library is compiled for the host CPU (``-march=native``: AVX-512 VNNI, AVX2 or portable C,
chosen by the preprocessor) and cached under ``$AGENT_FORGE_KERNEL_CACHE`` or
``~/.cache/agent_forge/kernels``, keyed by the source, the flags and the compiler's own target macros,
so a cache shared between machines never hands one CPU another's build.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SOURCE = Path(__file__).with_name("ternary_gemv.c")
BASE_FLAGS = ("-O3", "-std=c11", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")
PATH_NAMES = {3: "c-avx512vnni", 2: "c-avx2", 1: "c-portable"}


class KernelBuildError(RuntimeError):
    """No C compiler, or the kernel did not compile or load."""


@dataclass(frozen=True)
class TernaryKernel:
    """A loaded kernel library and which dot-product path it was compiled with."""

    library: ctypes.CDLL
    path: Path
    name: str


def cache_dir() -> Path:
    env = os.environ.get("AGENT_FORGE_KERNEL_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "agent_forge" / "kernels"


def find_compiler() -> str | None:
    """``$CC`` if set, else the first of cc, gcc, clang on PATH."""
    env = os.environ.get("CC")
    if env:
        return shutil.which(env) or env
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _target_fingerprint(compiler: str, march_flags: tuple[str, ...]) -> str:
    """The compiler's version and predefined macros for these flags: they name the CPU features."""
    result = subprocess.run(
        [compiler, *march_flags, "-dM", "-E", "-x", "c", os.devnull],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout
    return version + "".join(sorted(result.stdout.splitlines()))


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> None:
    """Compile into a temporary file next to ``target`` and rename it in place (atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        cmd = [compiler, *flags, str(SOURCE), "-o", tmp_name, "-lm"]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            raise KernelBuildError(f"compiling the ternary kernel failed: {result.stderr.strip()[:2000]}")
        os.replace(tmp_name, target)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def build_kernel(march_flags: tuple[str, ...] = ("-march=native",), compiler: str | None = None) -> Path:
    """Compile (or find in the cache) the kernel for ``march_flags``; returns the library's path."""
    compiler = compiler or find_compiler()
    if compiler is None:
        raise KernelBuildError("no C compiler found (install gcc or clang, or set CC)")
    flags = (*BASE_FLAGS, *march_flags)
    try:
        fingerprint = _target_fingerprint(compiler, march_flags)
    except (OSError, subprocess.SubprocessError) as err:
        raise KernelBuildError(f"the C compiler {compiler!r} does not run: {err}") from err
    key = hashlib.sha256("\0".join([SOURCE.read_text(), " ".join(flags), fingerprint]).encode()).hexdigest()
    target = cache_dir() / f"ternary_gemv_{key[:24]}.so"
    if not target.exists():
        _compile(compiler, flags, target)
    return target


class LayerArgs(ctypes.Structure):
    """``tg_layer`` of ternary_gemv.c: the fixed arguments of one layer."""

    _fields_ = [
        ("codes", ctypes.c_void_p),
        ("w_scale", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("k", ctypes.c_int32),
        ("n", ctypes.c_int32),
        ("k_pad", ctypes.c_int32),
        ("eps", ctypes.c_float),
    ]


def _declare(library: ctypes.CDLL) -> None:
    ptr, c_int = ctypes.c_void_p, ctypes.c_int
    fn = library.tg_ternary_linear
    fn.argtypes = [ptr, c_int, c_int, ptr, c_int, c_int, ptr, ptr, ptr, ctypes.c_float]
    fn.restype = c_int
    bound = library.tg_ternary_linear_layer
    bound.argtypes = [ptr, ptr, c_int, ptr]
    bound.restype = c_int
    library.tg_kernel_path.argtypes = []
    library.tg_kernel_path.restype = c_int


def load_kernel(
    march_flags: tuple[str, ...] = ("-march=native",), compiler: str | None = None
) -> TernaryKernel:
    """Build if needed and load; tries the portable build when the native flags are refused."""
    try:
        path = build_kernel(march_flags, compiler)
    except KernelBuildError:
        if not march_flags:
            raise
        path = build_kernel((), compiler)
    try:
        library = ctypes.CDLL(str(path))
    except OSError as err:
        raise KernelBuildError(f"cannot load the ternary kernel {path}: {err}") from err
    _declare(library)
    return TernaryKernel(library=library, path=path, name=PATH_NAMES[library.tg_kernel_path()])
