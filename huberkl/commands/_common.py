"""Options shared by every sub-command: Hydra overrides, ``--cfg`` and ``--out``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

P = ParamSpec("P")
R = TypeVar("R")

Overrides = Annotated[
    list[str] | None,
    typer.Argument(help="Hydra overrides, key=value (e.g. toy.seeds=8).", show_default=False),
]
CfgFlag = Annotated[bool, typer.Option("--cfg", help="Print the resolved config and exit.")]
OutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Output folder (default: a new folder under outputs/<command>/)."),
]


def setup(
    command: str,
    overrides: list[str] | None,
    print_cfg: bool,
    out: Path | None = None,
    extra: list[str] | None = None,
    writes: bool = True,
):
    """Compose the config, honour ``--cfg``, make the output folder and record the run.

    ``extra`` are overrides the command's own options translate to (they come first, so
    explicit ``key=value`` overrides win). Returns ``(cfg, out_dir)``; ``out_dir`` is None
    when the command writes nothing.
    """
    from huberkl import config

    all_overrides = [*(extra or []), *(overrides or [])]
    cfg = config.compose(all_overrides)
    if print_cfg:
        typer.echo(config.to_yaml(cfg), nl=False)
        raise typer.Exit(0)
    if not writes:
        return cfg, None
    out_dir = config.run_dir(command, out)
    config.save_run(cfg, out_dir, command, all_overrides)
    return cfg, out_dir


def check_out(out: Path | None) -> None:
    """Refuse an ``--out`` that cannot be written (one line, exit 2) before any work is done.

    Without ``--out`` the default folder goes under ``outputs/``, which must be writable too.
    """
    from huberkl import config

    if out is None:
        config.check_writable(config.OUTPUTS, "the default --out under")
    else:
        config.check_writable(out, "--out")


def undo_on_refusal(command: Callable[P, R]) -> Callable[P, R]:
    """``command`` run inside :func:`huberkl.config.undo_on_refusal`.

    A command that refuses its input after ``setup`` made its folder (a missing file found
    while working) then leaves no half-made folder with a ``config.yaml`` that looks like a
    run. Typer reads the signature through ``functools.wraps``.
    """

    @functools.wraps(command)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> R:
        from huberkl import config

        with config.undo_on_refusal():
            return command(*args, **kwargs)

    return wrapped
