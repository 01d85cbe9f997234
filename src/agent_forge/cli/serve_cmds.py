"""`agent-forge serve`: an OpenAI-compatible HTTP endpoint for a registered model or an edge bundle."""

from __future__ import annotations

import contextlib
import errno
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from agent_forge.cli.app import STATE, app, open_workspace
from agent_forge.cli.render import out
from agent_forge.cli.ui_cmds import _is_loopback
from agent_forge.errors import ArtifactCorruptError, ConfigError, NotFoundError

if TYPE_CHECKING:
    from agent_forge.serve import Backend


def _backend(target: str, name: str | None) -> Backend:
    """A bundle folder, or else a registered model id (checksums verified before loading either)."""
    if Path(target).is_dir():
        return _bundle_backend(Path(target), name)
    from agent_forge.model_io import load_model, load_ref, load_tokenizer
    from agent_forge.serve import model_backend

    _, registry = open_workspace(create=False)
    ref = load_ref(registry, target)
    return model_backend(name or target, load_model(ref), load_tokenizer(ref))


def _bundle_backend(folder: Path, name: str | None) -> Backend:
    from agent_forge.export.runtime.manifest import ManifestError
    from agent_forge.serve import bundle_backend

    if not (folder / "manifest.json").is_file():
        raise NotFoundError(f"{folder} is not a bundle (no manifest.json)",
                            "pass a folder `agent-forge export` wrote, or a model id from `agent-forge models`")
    try:
        return bundle_backend(folder, name)
    except ManifestError as exc:
        raise ArtifactCorruptError(str(exc), "re-create the bundle with `agent-forge export`") from exc
    except ValueError as exc:  # an ONNX-only bundle: no packed ternary weights
        raise ConfigError(f"bundle {folder} cannot be served: {exc}",
                          "export it with `agent-forge export SESSION --format ternary`") from exc


@app.command()
def serve(
    target: Annotated[str, typer.Argument(help="Model id (see `agent-forge models`) or a bundle folder.")],
    port: Annotated[int, typer.Option("--port", help="Port to listen on (0: any free one).")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address to listen on (loopback unless you mean it).")]
    = "127.0.0.1",
    name: Annotated[str | None, typer.Option("--name", help="Model name clients use (default: the model id, "
                                             "or SOURCE__bundle for a bundle).")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Most tokens one request may ask "
                                            "for.")] = 256,
    max_concurrent: Annotated[int, typer.Option("--max-concurrent", min=1, help="Requests inside at once "
                                                "(one decodes, the others wait); more get 429.")] = 4,
    max_body_kb: Annotated[int, typer.Option("--max-body-kb", min=1, help="Largest request body.")] = 64,
) -> None:
    """Serve a model or bundle over HTTP with OpenAI's API: /v1/models, /v1/completions and
    /v1/chat/completions (streaming, temperature, top_p, max_tokens, stop, seed; think and tools modes)."""
    from agent_forge.serve import ForgeServer, Limits

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be 0-65535, got {port}", "pick a free port, e.g. --port 8001")
    backend = _backend(target, name)
    limits = Limits(max_body_bytes=max_body_kb * 1024, max_tokens=max_tokens, max_concurrent=max_concurrent)
    if not _is_loopback(host):
        out.print(f"[yellow]warning:[/yellow] listening on {host}: anyone who can reach this machine can use "
                  "the model; the endpoint has no authentication")
    log = None if STATE.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        server = ForgeServer(backend, limits, host, port, log)
    except OSError as exc:
        busy = exc.errno == errno.EADDRINUSE
        raise ConfigError(f"cannot listen on {host}:{port} ({'in use' if busy else exc.strerror or exc})",
                          "pick another --port" if busy else "check --host and --port") from None
    out.print(f"serving {backend.name} ({backend.source}, context {backend.context} tokens) at {server.url} "
              "(Ctrl-C stops it)", soft_wrap=True, highlight=False, markup=False)
    sys.stdout.flush()
    try:
        with _threads_for(backend):
            server.serve_forever()
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a server is meant to stop: exit 0
    finally:
        server.server_close()


def _threads_for(backend: Backend) -> contextlib.AbstractContextManager:
    """A bundle's runtime decodes batch-1 small matmuls: one BLAS thread (more only spin, 3.5x slower
    measured on a busy 2-core machine), as its own package asks for when it loads numpy first."""
    if not backend.numpy_runtime:
        return contextlib.nullcontext()
    from agent_forge.export.build import blas_threads

    return blas_threads(1)
