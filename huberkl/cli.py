"""The ``huberkl`` command line: a thin Typer layer over the library.

Each sub-command lives in ``huberkl/commands/<name>.py`` and registers itself. Exit codes:
bad input (:class:`huberkl.errors.InputError`, and click's usage errors) is one line on
stderr and code 2; Ctrl-C is 130; a stop on SIGTERM is 143 (128 + signal number, as shells
and schedulers read it); any other exception is a bug and keeps its traceback (code 1).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable

import typer

from huberkl import __version__
from huberkl.errors import InputError

COMMANDS = ("losses", "interpret", "toy", "data", "detect", "report", "noise")

app = typer.Typer(
    name="huberkl",
    help="The Huber loss as a KL divergence between Laplace distributions: "
    "pick α, λ and σ from label-noise scales.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"huberkl {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """The Huber loss as a KL divergence between Laplace distributions."""


for _name in COMMANDS:
    _module = importlib.import_module(f"huberkl.commands.{_name}")
    _module.register(app)


def main() -> None:
    """Console entry point: run the app; bad input is exit code 2, other errors keep their traceback."""
    # With standalone_mode=False click returns (not raises) a typer.Exit's code.
    run(lambda: app(standalone_mode=False))


def run(entry: Callable[[], object]) -> None:
    """Call ``entry`` and exit with the codes of this module's docstring: the one place
    that maps :class:`InputError` to exit code 2 (``python -m huberkl.reproduce`` uses it too).
    """
    try:
        code = entry()
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except InputError as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        typer.echo(f"error: {msg}", err=True)
        sys.exit(2)
    except Exception as exc:
        try:
            from click.exceptions import ClickException
        except ImportError:  # typer >= 0.2x vendors click as typer._click
            from typer._click.exceptions import ClickException

        if isinstance(exc, ClickException):
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        raise  # a bug: Python prints the traceback and exits with code 1


if __name__ == "__main__":
    main()
