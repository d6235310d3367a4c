"""`huberkl noise`: measure the label noise of a dataset and read the box-loss settings off it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from huberkl.commands._common import (
    CfgFlag,
    OutOption,
    Overrides,
    check_out,
    setup,
    undo_on_refusal,
)


def _opt(*names: str, help: str):
    return typer.Option(*names, help=help, show_default=False)


def noise(
    annotations: Annotated[
        Path | None,
        typer.Argument(
            help="COCO instances file to measure (with --reference).", show_default=False
        ),
    ] = None,
    reference: Annotated[
        Path | None, _opt("--reference", "-r", help="COCO instances file of the same images.")
    ] = None,
    reference_kind: Annotated[
        str,
        typer.Option(
            "--reference-kind",
            help="gold: the reference is exact | peer: an independent annotation of the same quality.",
        ),
    ] = "gold",
    min_iou: Annotated[
        float, typer.Option("--min-iou", help="Matched pairs need at least this IoU, in (0, 1].")
    ] = 0.5,
    iou_agreement: Annotated[
        float | None,
        _opt(
            "--iou-agreement",
            help="Instead: the mean IoU between two annotators, inverted to a scale.",
        ),
    ] = None,
    family: Annotated[
        str,
        typer.Option(
            "--family", help="With --iou-agreement: laplace | gaussian | logistic | cauchy."
        ),
    ] = "laplace",
    residuals: Annotated[
        Path | None, _opt("--residuals", help="Instead: a CSV of pilot-fit residuals.")
    ] = None,
    column: Annotated[str, typer.Option("--column", help="Residuals column.")] = "r",
    preset: Annotated[
        str,
        typer.Option(
            "--preset", help="Preset whose label/prediction ratio sets the prediction noise."
        ),
    ] = "exp-c",
    pred_noise: Annotated[
        str | None,
        _opt(
            "--pred-noise",
            help="Prediction-noise scales in anchor units instead (x,y,w,h; λ is shared, so "
            "they must be proportional to the label noise).",
        ),
    ] = None,
    name: Annotated[
        str | None,
        _opt("--name", help="Name of the params preset written (default: from the file)."),
    ] = None,
    resamples: Annotated[
        int, typer.Option("--resamples", help="Bootstrap resamples for the 95% CI.")
    ] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    figure: Annotated[bool, typer.Option("--figure/--no-figure", help="Write errors.png.")] = True,
    fmt: Annotated[str, typer.Option("--format", "-f", help="table | json | csv.")] = "table",
    out: OutOption = None,
    print_cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Measure label noise (two annotations, a mean IoU, or residuals) and read off α, λ, σ.

    Examples: [b]huberkl noise ann.json --reference gold.json[/] ·
    [b]huberkl noise ann.json -r other.json --reference-kind peer --format json[/] ·
    [b]huberkl noise --iou-agreement 0.85[/] · [b]huberkl noise --residuals fit.csv[/]
    """
    from huberkl import config
    from huberkl.errors import InputError
    from huberkl.noise import measure
    from huberkl.noise.render import FORMATS

    if fmt not in FORMATS:
        raise InputError(f"--format must be one of {'|'.join(FORMATS)}, got {fmt!r}")
    if reference_kind not in ("gold", "peer"):
        raise InputError(f"--reference-kind must be gold or peer, got {reference_kind!r}")
    if resamples < 0:
        raise InputError(f"--resamples must be >= 0, got {resamples}")
    ways = [
        annotations is not None or reference is not None,
        iou_agreement is not None,
        residuals is not None,
    ]
    if sum(ways) != 1:
        raise InputError(
            "give exactly one of: ANN.json --reference REF.json, --iou-agreement q, --residuals FILE.csv"
        )
    if ways[0] and (annotations is None or reference is None):
        raise InputError("ANN.json and --reference REF.json go together")
    if not (0.0 < min_iou <= 1.0):
        raise InputError(f"--min-iou must be in (0, 1], got {min_iou}")
    run_cfg, _ = setup("noise", overrides, print_cfg, writes=False)
    check_out(out)  # before the measurement; its files and folder come after it
    if annotations is not None:
        result = measure.from_annotations(
            annotations, reference, reference_kind, min_iou, preset, pred_noise, resamples, seed
        )
        default_name = f"noise-{annotations.stem}"
    elif iou_agreement is not None:
        result = measure.from_iou_agreement(
            iou_agreement, family, reference_kind, preset, pred_noise
        )
        default_name = f"noise-iou-{iou_agreement:g}"
    else:
        result = measure.from_residuals(residuals, column, resamples, seed)
        default_name = f"noise-{residuals.stem}"
    out_dir = config.run_dir("noise", out)
    config.save_run(run_cfg, out_dir, "noise", list(overrides or []))
    written = measure.write_outputs(
        result, out_dir, measure.preset_name(name or default_name), figure
    )
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    _emit(result, fmt, written)


def _emit(result: dict, fmt: str, written: dict[str, str]) -> None:
    from huberkl.noise import render

    if fmt == "json":
        typer.echo(render.render_json(result), nl=False)
        return
    if fmt == "csv":
        typer.echo(render.render_csv(result), nl=False)
        return
    from rich.console import Console

    console = Console(width=max(Console().width, 140))
    for table in render.rich_tables(result):
        console.print(table)
    for key, path in written.items():
        console.print(f"[dim]{key}:[/] {path}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add `huberkl noise` to `app`."""
    app.command("noise", no_args_is_help=True)(undo_on_refusal(noise))
