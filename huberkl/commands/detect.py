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
    _listing_default = False  # True while --help is formatted

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = [self.default, *args]
        return super().parse_args(ctx, args)

    def format_help(self, ctx, formatter) -> None:
        """Also list the default sub-command's options: ``huberkl detect --out X -m ...``
        trains, so ``huberkl detect --help`` must show ``--out``, ``-m`` and ``--cfg``."""
        self._listing_default = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing_default = False

    def get_params(self, ctx) -> list:
        """The group's own parameters; while help is formatted, then the default command's
        options (copies, in their own panel), for display only: parsing never sees them."""
        import copy

        params = super().get_params(ctx)
        command = self.commands.get(self.default)
        if not self._listing_default or command is None:
            return params
        panel = f"Options of {self.default} (without a sub-command)"
        extra = []
        for param in command.get_params(ctx):
            if param.param_type_name != "option" or param.name == "help":
                continue
            shown = copy.copy(param)
            shown.rich_help_panel = panel  # type: ignore[attr-defined]
            extra.append(shown)
        return [*params, *extra]


detect_app = typer.Typer(
    cls=DefaultCommandGroup,
    help="Faster R-CNN and RetinaNet with the paper's box-loss settings (Sec. 7). "
    "Without a sub-command: train, with the options listed below and Hydra overrides "
    "(huberkl detect --out runs/x params=exp-a).",
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
    (:func:`huberkl.detect.training.runs.find_matching_run`); a path: that run's folder.
    """
    from huberkl.detect.training import runs

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
        from huberkl.commands.hydra_app import sweep_points

        overrides = [o for o in sweep_points(overrides)[0] if not o.startswith("hydra")]
        multirun = False
    if multirun:
        from huberkl.commands._common import check_out
        from huberkl.commands.hydra_app import multirun as sweep

        check_out(out)  # Hydra would make the sweep folder with a traceback
        sweep(overrides, out)
        return
    import shlex

    from rich.console import Console

    from huberkl import config
    from huberkl.detect import dist
    from huberkl.detect.training import runs
    from huberkl.detect.training import train as training
    from huberkl.detect.training.loop import NonFiniteLossError
    from huberkl.errors import InputError

    # Composed and checked (huberkl.schema) before any folder; the folder is made below,
    # once every rank agrees on it.
    run_cfg, _ = setup("detect", overrides, False, writes=False)
    if out is None:
        out = _resume_dir(overrides, run_cfg)
    if out is not None:
        # detect.resume: the run's own config from its checkpoint, the overrides on top.
        run_cfg = runs.resume_config(run_cfg, Path(out), overrides)
    if cfg:
        typer.echo(config.to_yaml(run_cfg), nl=False)
        raise typer.Exit(0)
    if out is not None:
        runs.check_out_dir(run_cfg, Path(out))  # a run folder is not trained into by mistake
    info = dist.init(run_cfg.detect.device)
    with config.undo_on_refusal():  # a refused run leaves no folder that looks like a run
        made, refused = None, None
        if info.is_main:
            try:
                made = str(config.run_dir("detect", out))
            except InputError as exc:
                refused = str(exc)
        made, refused = dist.broadcast_object((made, refused))
        out_dir = Path(made) if made else Path()
        try:
            if refused:
                raise InputError(refused)
            # every rank, before a run's config.yaml is rewritten
            resume_from = runs.check_out_dir(run_cfg, out_dir)
        except InputError:
            dist.destroy()  # every rank refuses alike; leave the process group cleanly
            raise
        if info.is_main:
            own = resume_from is not None and resume_from.parent.absolute() == out_dir.absolute()
            config.save_run(run_cfg, out_dir, "detect", overrides, resumed=own)
        console = Console(stderr=True, quiet=not info.is_main)
        console.print(f"[dim]run folder {out_dir}[/]")
        try:
            result = training.train(run_cfg, out_dir)
        except NonFiniteLossError as exc:
            dist.destroy()
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    if result.status == "interrupted":
        # The run's own config is in its checkpoint: this line alone continues it.
        again = f"huberkl detect --out {shlex.quote(str(out_dir))} detect.resume=true"
        console.print(
            f"stopped at iteration {result.iteration}; checkpoint {out_dir / runs.CHECKPOINT}; "
            f"continue with: {again}",
            highlight=False,
            markup=False,
            soft_wrap=True,
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
    from huberkl.detect.evaluation.coco_eval import METRICS
    from huberkl.detect.evaluation.evaluate import evaluate_checkpoint
    from huberkl.detect.training import checkpoint as ckpt
    from huberkl.detect.training import runs

    overrides = list(overrides or [])
    run_cfg = runs.checkpoint_config(ckpt.read_checkpoint(checkpoint, mmap=True), overrides)
    if cfg:
        typer.echo(config.to_yaml(run_cfg), nl=False)
        raise typer.Exit(0)
    with config.undo_on_refusal():  # e.g. the data is gone: no folder is left behind
        out_dir = config.run_dir("detect-evaluate", out)
        config.save_run(run_cfg, out_dir, "detect-evaluate", overrides)
        metrics = evaluate_checkpoint(run_cfg, checkpoint, split, out_dir)
    if metrics:
        Console().print(
            f"AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
            f"({metrics['images']} images) -> {out_dir / METRICS}"
        )


@detect_app.command("predict")
def predict(
    inputs: Annotated[
        list[str],
        typer.Argument(
            help="Images (JPEG/PNG) or folders of them, and Hydra overrides of the "
            "checkpoint's config (key=value: detect.model.*, detect.device, data.*).",
            metavar="PATH_OR_OVERRIDE",
            show_default=False,
        ),
    ],
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
    device: Annotated[
        str, typer.Option("--device", help="auto | cpu | cuda[:N] (or detect.device=...).")
    ] = "auto",
    out: OutOption = None,
    cfg: CfgFlag = False,
) -> None:
    """Detect objects in images: DIR/detections.json (COCO results) and DIR/images/ drawn.

    Uses the config the checkpoint was trained with; overrides change what prediction
    reads of it (e.g. detect.model.score_thresh=0.3 detect.device=cpu). An argument with
    = that is not an existing file is an override. An image that cannot be read is skipped
    with one line naming it; the others are predicted and written, and the exit code is
    then 2 (bad input), as for any other bad input.
    """
    from omegaconf import OmegaConf
    from rich.console import Console

    from huberkl import config
    from huberkl.detect.evaluation.predict import (
        DETECTIONS,
        DRAWN,
        find_images,
        load_run,
        predict_images,
    )
    from huberkl.errors import InputError

    paths = [Path(a) for a in inputs if "=" not in a or Path(a).exists()]
    overrides = [a for a in inputs if "=" in a and not Path(a).exists()]
    if not paths:
        raise InputError("no images given (PATHS... before any key=value overrides)")
    if not 0.0 <= score <= 1.0:
        raise InputError(f"--score must be in [0, 1], got {score}")
    find_images(paths)  # bad paths fail before any folder is made
    if cfg:
        from huberkl.detect.evaluation.predict import check_overrides, run_config
        from huberkl.detect.training import checkpoint as ckpt

        check_overrides(overrides)
        state = ckpt.read_checkpoint(checkpoint, mmap=True)
        typer.echo(config.to_yaml(OmegaConf.create(run_config(state, overrides))), nl=False)
        raise typer.Exit(0)
    run = load_run(checkpoint, device, overrides)
    skipped: list[Path] = []

    def skip(path: Path, message: str) -> None:
        skipped.append(path)
        typer.echo(f"error: {message}; skipped", err=True)

    with config.undo_on_refusal():  # e.g. a bad --ann: no folder is left behind
        out_dir = config.run_dir("detect-predict", out)
        config.save_run(OmegaConf.create(run.config), out_dir, "detect predict", overrides)
        rows = predict_images(run, paths, out_dir, score=score, ann_file=ann, on_unreadable=skip)
    unread = f", {len(skipped)} unreadable image(s) skipped" if skipped else ""
    Console().print(
        f"{len(rows)} detections (score >= {score}){unread} -> {out_dir / DETECTIONS}, "
        f"{out_dir / DRAWN}/",
        highlight=False,
        soft_wrap=True,
    )
    if skipped:
        raise typer.Exit(2)


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

    from huberkl.detect.evaluation.summarize import rich_table
    from huberkl.detect.evaluation.summarize import summarize as run

    rows, out_dir = run(folder, out)
    console = Console()
    console.print(rich_table(rows))
    console.print(f"[dim]{out_dir / 'summary.csv'}, {out_dir / 'summary.md'}[/]")


detect_app.command("train")(train)


def register(app: typer.Typer) -> None:
    """Add ``huberkl detect`` (a group whose default sub-command is ``train``) to ``app``."""
    app.add_typer(detect_app, name="detect")
