"""Command-line face: Typer commands that parse, call the pipeline or storage, and print with Rich."""

from __future__ import annotations

import signal
import sys

import click
import typer

try:  # typer >= 0.20 carries its own copy of click's exceptions
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer re-uses click
    from click.exceptions import NoArgsIsHelpError, UsageError

from agent_forge.cli import (  # noqa: F401 - register commands
    eval_cmds,
    export_cmds,
    generate_cmds,
    registry_cmds,
    serve_cmds,
    ui_cmds,
)
from agent_forge.cli.app import STATE, app
from agent_forge.cli.render import print_error
from agent_forge.errors import DISK_FULL_FIX, DiskFullError, ForgeError, disk_full


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        # typer turns KeyboardInterrupt into Exit(130) and, outside standalone mode, returns such codes
        status = app(args=argv, standalone_mode=False)
        if status == 130:
            _exit_interrupted()
        if isinstance(status, int) and not isinstance(status, bool) and status != 0:
            sys.exit(status)
    except ForgeError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort, KeyboardInterrupt):
        _exit_interrupted()
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(0)
    except (click.UsageError, UsageError) as exc:
        print_error(f"{exc.format_message()}; fix: see `agent-forge --help`")
        sys.exit(2)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        if not disk_full(exc):  # a bug: keep the traceback
            raise
        print_error(DiskFullError(f"disk full ({exc.__class__.__name__}: {exc})", DISK_FULL_FIX).one_line())
        sys.exit(DiskFullError.exit_code)


def _exit_interrupted() -> None:
    """Exit 130 after SIGINT/Ctrl-C, 143 after SIGTERM: an interrupted run never looks finished."""
    signum = STATE.stopped_by or signal.SIGINT
    print_error("interrupted; continue with `agent-forge resume SESSION`")
    sys.exit(128 + int(signum))


__all__ = ["app", "main"]
