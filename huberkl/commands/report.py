"""`huberkl report`: rebuild the reproduction report from the outputs `make reproduce` left."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from huberkl.commands._common import Overrides
from huberkl.errors import InputError


def report(
    scale: Annotated[str, typer.Option(help="Which reproduction: cpu, smoke or full.")] = "cpu",
    out: Annotated[
        Path | None, typer.Option("--out", help="Where report.md/.html go (default: outputs/).")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(
            help="Also export a small self-contained copy (Markdown, figures, tables, configs) here."
        ),
    ] = None,
    overrides: Overrides = None,
) -> None:
    """Rebuild outputs/report.md and .html from outputs/reproduce/<scale>/ (no recomputation)."""
    from huberkl import config, reproduce
    from huberkl.report import build_report, export_reference

    plan = reproduce.load_plan(scale, overrides=list(overrides or []))  # names the known scales
    root = reproduce.ROOT / scale
    if not root.is_dir():
        raise InputError(
            f"{root}: no reproduction of scale {scale!r} yet; run `make reproduce SCALE={scale}`"
        )
    # Where the report goes is checked before it is built (one line, not a traceback).
    config.check_writable(out if out is not None else root.parent.parent, "--out")
    if reference is not None:
        _check_reference(reference)
    steps = reproduce.all_steps(plan, root)
    md = build_report(root, steps, plan, elapsed=None, dest=out)
    typer.echo(f"report: {md}")
    if reference is not None:
        typer.echo(f"reference copy: {export_reference(md.parent, root, reference)}")


def _check_reference(path: Path) -> None:
    """``--reference`` is replaced whole: refuse a folder that is not an earlier copy.

    Exporting removes the folder first, so a user's folder given by mistake (``--reference
    ~/papers``) must be refused, not emptied.
    """
    from huberkl import config

    config.check_writable(path, "--reference")
    if path.is_dir() and any(path.iterdir()) and not (path / "report.md").is_file():
        raise InputError(
            f"--reference {path}: holds other files (no report.md of an earlier copy) and "
            "would be replaced; give a new or empty folder, or an earlier reference copy"
        )


def register(app: typer.Typer) -> None:
    """Add ``report`` to ``app``."""
    app.command(
        "report", help="Rebuild the reproduction report (report.md, report.html) from outputs/."
    )(report)
