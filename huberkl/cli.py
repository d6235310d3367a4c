"""The ``huberkl`` command line: a thin Typer layer over the library.

Each sub-command lives in ``huberkl/commands/<name>.py`` and registers itself; bad input
anywhere (``ValueError`` and friends) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

import typer

from huberkl import __version__

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
    """Console entry point: run the app, mapping bad input to exit code 2."""
    try:
        # With standalone_mode=False click returns (not raises) a typer.Exit's code.
        code = app(standalone_mode=False)
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
    except Exception as exc:  # noqa: BLE001 - the one place that turns errors into exit codes
        try:
            from click.exceptions import ClickException
        except ImportError:  # typer >= 0.2x vendors click as typer._click
            from typer._click.exceptions import ClickException

        if isinstance(exc, ClickException):
            typer.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, (ValueError, FileNotFoundError, NotADirectoryError)):
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            typer.echo(f"error: {msg}", err=True)
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
