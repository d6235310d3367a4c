"""Options shared by every sub-command: Hydra overrides, ``--cfg`` and ``--out``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
