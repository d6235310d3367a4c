"""`huberkl noise`: measure the label noise of a dataset and read the box-loss settings off it.

Composed like every command: each option is a key of the ``noise`` config group
(``conf/noise/default.yaml``, schema :class:`huberkl.schema.NoiseSchema`), set by a Hydra
override that comes before the user's own, so ``noise.min_iou=0.3`` and ``--min-iou 0.3`` are
the same and an explicit override wins.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from huberkl.commands._common import CfgFlag, OutOption, check_out, setup, undo_on_refusal

CONFIG = "default"  # the option of conf/noise/ that `huberkl noise` composes

# A positional argument that reads as a Hydra override: key=value (``+key=``, ``++key=``),
# or ``~key`` to delete one. Anything else, or an existing file, is ANN.json.
_OVERRIDE = re.compile(r"^(?:[+]{1,2}|~)?[A-Za-z_][\w.@/-]*=|^~[A-Za-z_][\w.@/-]*$")


def _opt(*names: str, help: str):
    return typer.Option(*names, help=help, show_default=False)


def quote(text: str) -> str:
    """``text`` as a Hydra quoted string, read back exactly (any path, quote or ``${``)."""
    text = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", text)
    text = re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)
    text = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, text)
    return f"'{text}'"


def split_arguments(args: list[str] | None) -> tuple[str | None, list[str]]:
    """``(ANN.json or None, Hydra overrides)`` from the positional arguments.

    Click cannot put an optional argument before a variable number of others, so both come
    as one list: an argument that reads as an override (and is no existing file) is one.
    """
    from huberkl.errors import InputError

    files, overrides = [], []
    for arg in args or []:
        is_override = _OVERRIDE.match(arg) is not None and not Path(arg).exists()
        (overrides if is_override else files).append(arg)
    if len(files) > 1:
        raise InputError(
            f"give one ANN.json (then key=value overrides), got {', '.join(map(repr, files))}"
        )
    return (files[0] if files else None), overrides


def _extra(options: dict[str, object]) -> list[str]:
    """The options given as overrides of ``noise.<key>`` (the schema checks them at compose)."""
    extra = [f"noise={CONFIG}"]
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, (str, Path)):
            text = quote(str(value))
        elif isinstance(value, bool):
            text = str(value).lower()
        else:
            text = repr(value)
        extra.append(f"noise.{key}={text}")
    return extra


Arguments = Annotated[
    list[str] | None,
    typer.Argument(
        help="ANN.json, a COCO instances file to measure (with --reference), then Hydra "
        "overrides key=value (e.g. noise.resamples=50).",
        metavar="ANN.json KEY=VALUE",
        show_default=False,
    ),
]
ReferenceOption = Annotated[
    Path | None, _opt("--reference", "-r", help="COCO instances file of the same images.")
]
KindOption = Annotated[
    str | None,
    _opt(
        "--reference-kind",
        help="gold: the reference is exact | peer: an independent annotation of the same "
        "quality (default: config).",
    ),
]
MinIouOption = Annotated[
    float | None,
    _opt("--min-iou", help="Matched pairs need at least this IoU, in (0, 1] (default: config)."),
]
IouOption = Annotated[
    float | None,
    _opt(
        "--iou-agreement", help="Instead: the mean IoU between two annotators, inverted to a scale."
    ),
]
FamilyOption = Annotated[
    str | None,
    _opt(
        "--family",
        help="With --iou-agreement: laplace | gaussian | logistic | cauchy (default: config).",
    ),
]
ResidualsOption = Annotated[
    Path | None, _opt("--residuals", help="Instead: a CSV of pilot-fit residuals.")
]
ColumnOption = Annotated[str | None, _opt("--column", help="Residuals column (default: config).")]
PresetOption = Annotated[
    str | None,
    _opt(
        "--preset",
        help="Preset whose label/prediction ratio sets the prediction noise (default: config).",
    ),
]
PredNoiseOption = Annotated[
    str | None,
    _opt(
        "--pred-noise",
        help="Prediction-noise scales in anchor units instead (x,y,w,h; λ is shared, so "
        "they must be proportional to the label noise).",
    ),
]
NameOption = Annotated[
    str | None,
    _opt("--name", help="Name of the params preset written (default: from the file)."),
]
ResamplesOption = Annotated[
    int | None, _opt("--resamples", help="Bootstrap resamples for the 95% CI (default: config).")
]
SeedOption = Annotated[int | None, _opt("--seed", help="Bootstrap seed (default: config).")]
FigureOption = Annotated[
    bool | None, _opt("--figure/--no-figure", help="Write errors.png (default: config).")
]
FormatOption = Annotated[
    str | None, _opt("--format", "-f", help="table | json | csv (default: config).")
]


def noise(
    args: Arguments = None,
    reference: ReferenceOption = None,
    reference_kind: KindOption = None,
    min_iou: MinIouOption = None,
    iou_agreement: IouOption = None,
    family: FamilyOption = None,
    residuals: ResidualsOption = None,
    column: ColumnOption = None,
    preset: PresetOption = None,
    pred_noise: PredNoiseOption = None,
    name: NameOption = None,
    resamples: ResamplesOption = None,
    seed: SeedOption = None,
    figure: FigureOption = None,
    fmt: FormatOption = None,
    out: OutOption = None,
    print_cfg: CfgFlag = False,
) -> None:
    """Measure label noise (two annotations, a mean IoU, or residuals) and read off α, λ, σ.

    Each option sets a key of the config group noise, whose defaults are in conf/noise/default.yaml: --min-iou 0.3 is the override noise.min_iou=0.3, and --cfg prints the resolved config.

    Examples: [b]huberkl noise ann.json --reference gold.json[/] ·
    [b]huberkl noise ann.json -r other.json --reference-kind peer --format json[/] ·
    [b]huberkl noise --iou-agreement 0.85[/] · [b]huberkl noise --residuals fit.csv[/]
    """
    annotations, overrides = split_arguments(args)
    extra = _extra(
        {
            "annotations": annotations,
            "reference": reference,
            "reference_kind": reference_kind,
            "min_iou": min_iou,
            "iou_agreement": iou_agreement,
            "family": family,
            "residuals": residuals,
            "column": column,
            "preset": preset,
            "pred_noise": pred_noise,
            "name": name,
            "resamples": resamples,
            "seed": seed,
            "figure": figure,
            "format": fmt,
        }
    )
    run_cfg, _ = setup("noise", overrides, print_cfg, extra=extra, writes=False)

    from huberkl import config, schema
    from huberkl.noise import measure

    settings = schema.settings("noise", run_cfg.noise)  # the checked NoiseSchema
    check_out(out)  # before the measurement; its files and folder come after it
    result, default_name = measure.measure(settings)
    out_dir = config.run_dir("noise", out)
    config.save_run(run_cfg, out_dir, "noise", [*extra, *overrides])
    written = measure.write_outputs(
        result, out_dir, measure.preset_name(settings.name or default_name), settings.figure
    )
    for warning in result.get("warnings", []):
        typer.echo(f"warning: {warning}", err=True)
    _emit(result, settings.format, written)


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
