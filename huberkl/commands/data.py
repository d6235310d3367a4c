"""`huberkl data`: write the synthetic shapes set (`synth`), check a COCO-format split (`check`),
draw a split's boxes (`show`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from huberkl.commands._common import CfgFlag, OutOption, Overrides, setup, undo_on_refusal

data_app = typer.Typer(
    name="data",
    help="Datasets for `huberkl detect`: the synthetic shapes set and COCO-format checks.",
    no_args_is_help=True,
)


def _opt(name: str, help: str):
    return typer.Option(name, help=help, show_default=False)


@data_app.command("synth")
def synth(
    out: OutOption = None,
    images: Annotated[int | None, _opt("--images", "Train images (default: config).")] = None,
    val_images: Annotated[
        int | None, _opt("--val-images", "Val images, clean boxes (default: config).")
    ] = None,
    size: Annotated[int | None, _opt("--size", "Image side in pixels (default: config).")] = None,
    seed: Annotated[int | None, _opt("--seed", "Data seed (default: config).")] = None,
    noise: Annotated[
        str | None,
        _opt(
            "--noise",
            "Train-box noise: laplace | gaussian | none (--noise-model targets: also logistic, cauchy).",
        ),
    ] = None,
    noise_scale: Annotated[
        float | None, _opt("--noise-scale", "Edge-move scale, times box width/height.")
    ] = None,
    noise_model: Annotated[
        str | None,
        _opt(
            "--noise-model",
            "edges: move box edges (default) | targets: move (x_c, y_c, log w, log h), "
            "families laplace, gaussian, logistic, cauchy.",
        ),
    ] = None,
    noise_scales: Annotated[
        str | None,
        _opt("--noise-scales", "targets: per-coordinate scales x,y,w,h (e.g. 0.05,0.05,0.1,0.1)."),
    ] = None,
    copies: Annotated[
        int | None, _opt("--copies", "Independent noisy copies of the train annotations.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite a set already in --out.")
    ] = False,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Write the synthetic COCO-format shapes set (train + val, exact boxes) to --out.

    --out defaults to `data.root` from the config, where `huberkl detect` looks for it.
    """
    extra = [
        f"data.synth.{key}={value}"
        for key, value in (
            ("images", images),
            ("val_images", val_images),
            ("size", size),
            ("seed", seed),
            ("noise", noise),
            ("noise_scale", noise_scale),
        )
        if value is not None
    ]
    # Keys that conf/data/synth.yaml leaves out (so default configs hash as before): added.
    extra += [
        f"+data.synth.{key}={value}"
        for key, value in (
            ("noise_model", noise_model),
            ("copies", copies),
            ("noise_scales", None if noise_scales is None else f"[{noise_scales}]"),
        )
        if value is not None
    ]
    run_cfg, _ = setup("data", overrides, False, extra=extra, writes=False)

    from omegaconf import OmegaConf

    from huberkl import config
    from huberkl.errors import InputError

    if "synth" not in run_cfg.data:
        raise InputError(f"data={run_cfg.data.get('name')}: has no synth section (use data=synth)")
    if out is not None:
        run_cfg.data.root = str(out)  # paths below root follow by interpolation
    if cfg:
        typer.echo(config.to_yaml(run_cfg), nl=False)
        raise typer.Exit(0)

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from huberkl.detect.data.sets import check_new_set
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    # data.synth was checked at compose (huberkl.schema.SynthDataSchema); as it is given:
    kwargs = OmegaConf.to_container(run_cfg.data.synth, resolve=True)
    settings = SynthSchema.from_mapping(kwargs)
    root = Path(run_cfg.data.root)
    config.check_writable(root, "--out" if out is not None else "data.root")
    check_new_set(root, force)  # a set, complete or not, is replaced only with --force
    total = settings.images + settings.val_images
    # synthesize writes beside root and moves the set into place when it is complete: an
    # interrupted run leaves no images without annotations in root.
    with Progress(transient=True) as progress:
        task = progress.add_task("drawing shapes", total=total)
        paths = synthesize(root, settings, progress=lambda n: progress.advance(task, n))
    config.save_run(run_cfg, root, "data synth", [*extra, *(overrides or [])])
    table = Table(title="synthetic shapes set", show_header=False)
    for key, value in kwargs.items():
        table.add_row(key, str(value))
    for key, path in paths.items():
        table.add_row(key, str(path))
    Console().print(table)


@data_app.command("check")
def check(
    split: Annotated[str, typer.Option("--split", help="train | val | both.")] = "both",
    image_dir: Annotated[
        Path | None, _opt("--images", "Image folder (default: the config's split paths).")
    ] = None,
    ann_file: Annotated[Path | None, _opt("--ann", "Instances JSON (with --images).")] = None,
    decode: Annotated[bool, typer.Option("--decode", help="Also open every image.")] = False,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Read a COCO-format split as `huberkl detect` will, and print what it holds.

    Bad input (missing files, malformed JSON, empty split, unknown categories) is reported
    as one line naming the file.
    """
    run_cfg, _ = setup("data", overrides, cfg, writes=False)

    from huberkl.errors import InputError

    if (image_dir is None) != (ann_file is None):
        raise InputError("--images and --ann go together")
    if image_dir is not None:
        sources = [("given", image_dir, ann_file)]
    else:
        if split not in ("train", "val", "both"):
            raise InputError(f"--split {split!r}: allowed are train, val, both")
        names = ("train", "val") if split == "both" else (split,)
        sources = [(s, run_cfg.data[f"{s}_images"], run_cfg.data[f"{s}_ann"]) for s in names]

    from rich.console import Console
    from rich.progress import track
    from rich.table import Table

    from huberkl.detect.data.datasets import CocoDetection

    console = Console()
    for name, images_path, ann_path in sources:
        ds = CocoDetection(images_path, ann_path, min_size=float(run_cfg.data.get("min_size", 1)))
        if decode:
            for i in track(range(len(ds)), description=f"reading {name} images", transient=True):
                ds[i]
        stats = ds.stats()
        table = Table(title=f"{name}: {ann_path}", show_header=False)
        table.add_row("images", str(stats["images"]))
        table.add_row("images without boxes", str(stats["images_without_boxes"]))
        table.add_row("boxes", str(stats["boxes"]))
        table.add_row("skipped crowd boxes", str(stats["skipped"]["crowd"]))
        table.add_row("skipped degenerate boxes", str(stats["skipped"]["degenerate"]))
        for label, (cname, n) in enumerate(stats["boxes_per_class"].items(), 1):
            table.add_row(
                f"label {label} (category id {ds.label_to_cat_id(label)}) {cname}", str(n)
            )
        console.print(table)


@data_app.command("show")
@undo_on_refusal  # a split that cannot be read leaves no folder behind
def show(
    split: Annotated[str, typer.Option("--split", help="train | val.")] = "train",
    n: Annotated[int, typer.Option("--n", help="Images in the grid.")] = 16,
    out: OutOption = None,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Draw a grid of a split's images with their boxes (noisy beside clean where both exist).

    Small images are drawn enlarged (short side 512 px) so that class names stay readable;
    paired halves are captioned "training boxes (noisy)" and "clean boxes".
    """
    from huberkl.errors import InputError

    if split not in ("train", "val"):
        raise InputError(f"--split {split!r}: allowed are train, val")
    run_cfg, out_dir = setup("data-show", overrides, cfg, out)

    from rich.console import Console

    from huberkl.detect.evaluation.pictures import show_split

    d = run_cfg.data
    shown = show_split(
        d[f"{split}_images"], d[f"{split}_ann"], out_dir / f"{split}.png", n, float(d.min_size)
    )
    pairs = (
        f", noisy | clean: training boxes left, clean boxes ({shown['clean_ann']}) right"
        if shown["paired"]
        else ""
    )
    Console().print(f"{shown['images']} {split} images{pairs} -> {shown['path']}")


def register(app: typer.Typer) -> None:
    """Add `huberkl data ...` to `app`."""
    app.add_typer(data_app, name="data")
