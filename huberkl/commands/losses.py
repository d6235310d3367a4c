"""`huberkl losses`: Figure 1 of the paper (H_α between D_{α,1/α} and D_{α/2,1/α})."""

from __future__ import annotations

from typing import Annotated

import typer

from huberkl.commands._common import CfgFlag, OutOption, Overrides, setup, undo_on_refusal

AlphaOption = Annotated[
    list[str] | None,
    typer.Option(
        "--alpha",
        help="Huber α of one row; repeat for more rows (default 0.1, 1, 10). Fractions like 1/9 work.",
        show_default=False,
    ),
]


def _alphas_override(values: list[str] | None) -> list[str]:
    """``--alpha`` values -> the Hydra override ``losses.alphas=[...]``.

    Only the parsing is here (fractions such as 1/9); the range is checked at compose by
    :class:`huberkl.schema.LossesSchema`, which names ``losses.alphas``.
    """
    if not values:
        return []
    from huberkl.errors import InputError
    from huberkl.params import parse_number

    numbers = []
    for text in values:
        try:
            value = parse_number(text, "alpha")
        except InputError:
            raise InputError(
                f"alpha must be a finite number > 0 (e.g. 0.1 or 1/9), got {text!r}"
            ) from None
        numbers.append(repr(float(value)))
    return [f"losses.alphas=[{','.join(numbers)}]"]


def losses(
    alpha: AlphaOption = None,
    out: OutOption = None,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Figure 1: H_α between its two KL bounds, and the derivatives."""
    extra = _alphas_override(alpha)
    run_cfg, _ = setup("losses", overrides, cfg, out, extra=extra, writes=False)

    from rich.console import Console

    from huberkl import figure1, schema

    settings = schema.settings("losses", run_cfg.losses)  # the checked LossesSchema
    _, out_dir = setup("losses", overrides, False, out, extra=extra)
    paths = figure1.write(out_dir, settings)
    console = Console()
    for kind, path in paths.items():
        console.print(f"[bold]{kind}[/bold] {path}")


def register(app: typer.Typer) -> None:
    """Add ``huberkl losses`` to ``app``."""
    app.command("losses")(undo_on_refusal(losses))
