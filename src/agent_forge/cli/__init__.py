"""Command-line face: Typer commands that parse, call the pipeline or storage, and print with Rich."""

from __future__ import annotations

import sys

import click
import typer

try:  # typer >= 0.20 carries its own copy of click's exceptions
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # pragma: no cover - older typer re-uses click
    from click.exceptions import NoArgsIsHelpError, UsageError

from agent_forge.cli import eval_cmds, export_cmds, generate_cmds, registry_cmds, ui_cmds  # noqa: F401 - register commands
from agent_forge.cli.app import app
from agent_forge.cli.render import print_error
from agent_forge.errors import ForgeError


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        app(args=argv, standalone_mode=False)
    except ForgeError as exc:
        print_error(str(exc))
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        print_error("interrupted; continue with `agent-forge resume SESSION`")
        sys.exit(130)
    except NoArgsIsHelpError as exc:
        exc.show()
        sys.exit(0)
    except (click.UsageError, UsageError) as exc:
        print_error(f"{exc.format_message()}; fix: see `agent-forge --help`")
        sys.exit(2)
    except KeyboardInterrupt:
        print_error("interrupted; continue with `agent-forge resume SESSION`")
        sys.exit(130)
    except (click.exceptions.Exit, typer.Exit) as exc:
        sys.exit(exc.exit_code)


__all__ = ["app", "main"]
