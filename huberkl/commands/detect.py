"""`huberkl detect`: train, score and tabulate detectors with the paper's box-loss settings.

``huberkl detect [OPTIONS] [OVERRIDES]`` trains (``train`` is the default sub-command);
``huberkl detect evaluate --checkpoint PATH`` scores a checkpoint; ``huberkl detect
summarize DIR`` prints Table 3/4 from a sweep. ``-m`` hands a sweep to Hydra's launchers.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer
from typer.core import TyperGroup

from huberkl.commands._common import CfgFlag, OutOption, Overrides, setup


class DefaultCommandGroup(TyperGroup):
    """A group that runs ``default`` when the first argument is not one of its sub-commands.

    So ``huberkl detect params=exp-a`` means ``huberkl detect train params=exp-a``, while
    ``huberkl detect --help`` still lists the sub-commands.
    """

    default = "train"

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)


detect_app = typer.Typer(
    cls=DefaultCommandGroup,
    help="Faster R-CNN and RetinaNet with the paper's box-loss settings (Sec. 7). "
    "Without a sub-command: train.",
    add_completion=False,
    rich_markup_mode="rich",
)

MultirunFlag = Annotated[
    bool,
    typer.Option(
        "--multirun",
        "-m",
        help="Sweep comma-separated overrides through Hydra's launcher "
        "(e.g. params=implementation,exp-a hydra/launcher=submitit_local).",
    ),
]


def _resume_dir(overrides: list[str], run_cfg) -> Path | None:
    """Where ``detect.resume=...`` continues when no --out is given.

    ``true``: the newest run under ``outputs/detect/`` whose saved config is this one
    (:func:`huberkl.detect.runs.find_matching_run`); a path: that run's folder.
    """
    from huberkl.detect import runs

    value = run_cfg.detect.get("resume")
    if value is None or str(value).lower() in ("false", "no", "0", "null", ""):
        return None
    if value is True or str(value).lower() in ("true", "yes", "1"):
        from huberkl import config

        return runs.find_matching_run(run_cfg, config.OUTPUTS / "detect")
    path = Path(str(value))
    return path if path.is_dir() else path.parent


def train(
    out: OutOption = None,
    multirun: MultirunFlag = False,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Train a detector (config group detect, box loss from params) and score it on val."""
    overrides = list(overrides or [])
    if multirun and cfg:  # show the first job's config
        from huberkl.detect.hydra_app import sweep_points

        overrides = [o for o in sweep_points(overrides)[0] if not o.startswith("hydra")]
        multirun = False
    if multirun:
        from huberkl.detect.hydra_app import multirun as sweep

        sweep(overrides, out)
        return
    from rich.console import Console

    from huberkl import config
    from huberkl.detect import dist, engine, runs
    from huberkl.errors import InputError

    # Composed and checked (huberkl.schema) before any folder; the folder is made below,
    # once every rank agrees on it.
    run_cfg, _ = setup("detect", overrides, cfg, writes=False)
    if out is None:
        out = _resume_dir(overrides, run_cfg)
    info = dist.init(run_cfg.detect.device)
    out_dir = config.run_dir("detect", out) if info.is_main else None
    out_dir = Path(dist.broadcast_object(str(out_dir) if out_dir else None))
    try:
        runs.check_out_dir(run_cfg, out_dir)  # every rank, before a run's config.yaml is rewritten
    except InputError:
        dist.destroy()  # every rank refuses alike; leave the process group cleanly
        raise
    if info.is_main:
        config.save_run(run_cfg, out_dir, "detect", overrides)
    console = Console(stderr=True, quiet=not info.is_main)
    console.print(f"[dim]run folder {out_dir}[/]")
    try:
        result = engine.train(run_cfg, out_dir)
    except engine.NonFiniteLossError as exc:
        dist.destroy()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    if result.status == "interrupted":
        console.print(
            f"stopped at iteration {result.iteration}; checkpoint {out_dir / engine.CHECKPOINT}; "
            f"continue with: huberkl detect --out {out_dir} detect.resume=true"
        )
        # 128 + signal number, as a shell reports a process ended by it (SIGTERM 143, SIGINT 130).
        raise typer.Exit(128 + (result.signal or signal.SIGINT))


@detect_app.command("evaluate")
def evaluate(
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="checkpoint.pt (or its run folder) to score.")
    ],
    split: Annotated[str, typer.Option("--split", help="train or val.")] = "val",
    out: OutOption = None,
    cfg: CfgFlag = False,
    overrides: Overrides = None,
) -> None:
    """Score a checkpoint with COCOeval (bbox): metrics.json and detections.json in --out.

    Uses the config the checkpoint was trained with (its data, model and box loss);
    overrides change it (e.g. data.root=/elsewhere); another architecture is refused.
    """
    from huberkl.errors import InputError

    if split not in ("train", "val"):
        raise InputError(f"--split must be train or val, got {split!r}")

    from rich.console import Console

    from huberkl import config
    from huberkl.detect import checkpoint as ckpt
    from huberkl.detect import engine, runs

    overrides = list(overrides or [])
    run_cfg = runs.checkpoint_config(ckpt.read_checkpoint(checkpoint, mmap=True), overrides)
    if cfg:
        typer.echo(config.to_yaml(run_cfg), nl=False)
        raise typer.Exit(0)
    out_dir = config.run_dir("detect-evaluate", out)
    config.save_run(run_cfg, out_dir, "detect-evaluate", overrides)

    metrics = engine.evaluate_checkpoint(run_cfg, checkpoint, split, out_dir)
    if metrics:
        Console().print(
            f"AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
            f"({metrics['images']} images) -> {out_dir / engine.METRICS}"
        )


@detect_app.command("predict")
def predict(
    paths: Annotated[list[Path], typer.Argument(help="Images (JPEG/PNG) or folders of them.")],
    checkpoint: Annotated[
        Path, typer.Option("--checkpoint", help="checkpoint.pt (or its run folder).")
    ],
    score: Annotated[
        float, typer.Option("--score", help="Keep detections scoring at least this.")
    ] = 0.5,
    ann: Annotated[
        Path | None,
        typer.Option("--ann", help="COCO instances file: its images get their image_id."),
    ] = None,
    device: Annotated[str, typer.Option("--device", help="auto | cpu | cuda[:N].")] = "auto",
    out: OutOption = None,
) -> None:
    """Detect objects in images: DIR/detections.json (COCO results) and DIR/images/ drawn."""
    from omegaconf import OmegaConf
    from rich.console import Console

    from huberkl import config
    from huberkl.detect.predict import DETECTIONS, DRAWN, find_images, load_run, predict_images

    find_images(paths)  # bad paths fail before any folder is made
    run = load_run(checkpoint, device)
    out_dir = config.run_dir("detect-predict", out)
    config.save_run(OmegaConf.create(run.config), out_dir, "detect predict")
    rows = predict_images(run, paths, out_dir, score=score, ann_file=ann)
    Console().print(
        f"{len(rows)} detections (score >= {score}) -> {out_dir / DETECTIONS}, {out_dir / DRAWN}/"
    )


@detect_app.command("summarize")
def summarize(
    folder: Annotated[Path, typer.Argument(help="A sweep folder (searched recursively for runs).")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where summary.csv and summary.md go (default: FOLDER)."),
    ] = None,
) -> None:
    """Table 3/4: mAP at 0.5, 0.75 and 0.5:0.95 per setting, beside its noise scales."""
    from rich.console import Console

    from huberkl.detect.summarize import rich_table
    from huberkl.detect.summarize import summarize as run

    rows, out_dir = run(folder, out)
    console = Console()
    console.print(rich_table(rows))
    console.print(f"[dim]{out_dir / 'summary.csv'}, {out_dir / 'summary.md'}[/]")


detect_app.command("train")(train)


def register(app: typer.Typer) -> None:
    """Add ``huberkl detect`` (a group whose default sub-command is ``train``) to ``app``."""
    app.add_typer(detect_app, name="detect")
