"""Train a detector with the paper's box-loss settings, then score it with COCO mAP.

What torchvision's ``references/detection/train.py`` does (their ``engine.py`` is our
:mod:`.loop`). :func:`train` runs top to bottom: join torchrun's process group (if any),
make sure the dataset exists (:mod:`huberkl.detect.data.sets`), build the model from
``detect.model`` and the ``params`` preset (:mod:`huberkl.detect.model.detectors`) and its
optimiser and schedule (:mod:`.optim`), continue from a checkpoint if asked
(:mod:`.resume`), train (:mod:`.loop`), then score the val split
(:mod:`huberkl.detect.evaluation.evaluate`). Every iteration appends a row to
``losses.csv``; every ``detect.ckpt_every`` iterations, on SIGINT/SIGTERM and at the end,
rank 0 writes ``checkpoint.pt`` with everything needed to continue exactly. On a CPU, with
the same thread count, a resumed run ends with the same weights, bit for bit, as an
uninterrupted one, with or without loader workers (:mod:`huberkl.detect.data.loaders` says
why). What may change on resume is :mod:`.runs`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from huberkl.detect import dist
from huberkl.detect.data import loaders, sets
from huberkl.detect.data.datasets import load_split
from huberkl.detect.evaluation.coco_eval import METRICS
from huberkl.detect.evaluation.evaluate import evaluate_model
from huberkl.detect.model.detectors import build_model, model_config, preset_of
from huberkl.detect.training import checkpoint as ckpt
from huberkl.detect.training import loop, optim, resume, runs
from huberkl.detect.training.runs import CHECKPOINT, LOSSES_CSV
from huberkl.errors import InputError


@dataclass
class TrainResult:
    """What :func:`train` leaves behind (files are in ``out_dir``)."""

    out_dir: Path
    iteration: int
    status: str  # finished | interrupted
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    signal: int = 0  # the signal that stopped an interrupted run (exit code 128 + signal)


def make_model(cfg: DictConfig, num_classes: int) -> torch.nn.Module:
    """``build_model(detect.model, params preset, C)``; ``detect.model.weights`` loads a file."""
    return build_model(model_config(cfg), preset_of(cfg), num_classes)


def train(
    cfg: DictConfig,
    out_dir: str | Path,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg.detect`` on ``cfg.data`` with ``cfg.params``; files go to ``out_dir`` (rank 0).

    ``on_iteration(i, losses)`` is called after each completed iteration (tests use it to
    raise a signal at a chosen point). Raises :class:`.loop.NonFiniteLossError` on a NaN/inf
    loss.
    """
    with dist.threads(cfg.detect.get("threads")):
        try:
            return _train(cfg, Path(out_dir), on_iteration)
        finally:
            dist.destroy()


def _train(cfg: DictConfig, out_dir: Path, on_iteration) -> TrainResult:
    from rich.console import Console

    d = cfg.detect
    info = dist.init(d.device)
    console = Console(stderr=True, quiet=not info.is_main, soft_wrap=True)
    say = console.print
    t_start = time.perf_counter()

    seed = int(cfg.seed)
    _seed(seed + info.rank)
    resume_path = runs.check_out_dir(cfg, out_dir)
    train_set = _train_set(cfg, info, out_dir, say)
    t, arch = _trainable(cfg, int(train_set.num_classes), info)
    if info.is_main:  # what the report describes a run by, from the run itself
        from huberkl import config

        config.record_run(out_dir, model=_model_record(cfg, t.model), device=str(info.device))
    start = 0
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if resume_path is not None:
        schedule = optim.schedule_from(d)
        start = resume.restore(resume_path, t, arch, config_dict, schedule, info, say)  # type: ignore[arg-type]
    data = loaders.train_loader(train_set, info, d.batch_size, d.workers, seed)
    run = {
        "arch": arch,
        "world_size": info.world_size,
        "config": config_dict,
        "categories": train_set.coco.dataset["categories"],
        "config_source": OmegaConf.to_container(cfg, resolve=False),
    }
    last = start if resume_path is not None else None
    saver = resume.Checkpointer(
        t, out_dir / CHECKPOINT, info, data.per_epoch, d.batch_size, run, last
    )

    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        loop.truncate_csv(out_dir / LOSSES_CSV, start)
    from huberkl.detect.training.logger import ScalarLog  # detect.log=tensorboard: also TensorBoard

    scalar_log = ScalarLog(str(d.get("log", "csv")) if info.is_main else "csv", out_dir, start)
    plan = loop.Plan(int(d.iters), d.ckpt_every)
    with loop.StopFlag(say) as stop, loop.progress_bar(info.is_main) as progress:
        task = progress.add_task("train", total=plan.total, completed=start, losses="")
        log = loop.LossLog(out_dir / LOSSES_CSV, info.is_main, scalar_log, progress, task)
        try:
            it, stop_sig = loop.run(
                t, data, plan, start, saver, log, stop, info.device, on_iteration
            )
        finally:
            log.close()
            data.close()
    status = "interrupted" if stop_sig > 0 else "finished"

    metrics: dict[str, float] = {}
    if status == "finished" and d.get("eval", True):
        val_set = load_split(cfg.data, "val", train=False)
        say(f"evaluating on {len(val_set)} val images")
        metrics = evaluate_model(
            t.model,
            val_set,
            info,
            out_dir if info.is_main else None,
            batch_size=d.eval_batch_size,
            workers=d.workers,
            extra={"iteration": it, "split": "val"},
        )
    scalar_log.scalars(it, metrics, "eval/")
    scalar_log.close()
    # Ranks leave together: a rank that tears gloo down while rank 0 still writes the
    # evaluation aborts ("terminate called without an active exception", seen 1 run in 6).
    dist.barrier()
    seconds = time.perf_counter() - t_start
    if info.is_main and metrics:
        say(
            f"AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
            f"({seconds:.0f} s) -> {out_dir / METRICS}"
        )
    return TrainResult(out_dir, it, status, metrics, seconds, signal=stop_sig)


def _model_record(cfg: DictConfig, model: torch.nn.Module) -> dict[str, Any]:
    """Architecture, backbone and size of the model as built (for run.json and reports)."""
    m = cfg.detect.model
    return {
        "arch": str(m.arch),
        "backbone": str(m.backbone),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "backbone_parameters": int(
            sum(p.numel() for p in getattr(model, "backbone", model).parameters())
        ),
        "min_size": int(m.min_size),
        "target_encoding": str(m.target_encoding),
    }


def _seed(seed: int) -> None:
    """This rank's global RNG streams (the detectors' anchor and RoI samplers draw from them)."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def _train_set(cfg: DictConfig, info: dist.DistInfo, out_dir: Path, say) -> Any:
    """The train split (made on disk first if needed); ``run.json`` records what was read."""
    from rich.markup import escape

    d = cfg.detect
    data_record = (
        sets.ensure_dataset(cfg.data, lambda line: say(escape(line))) if info.is_main else {}
    )
    dist.barrier()  # the other ranks read the set rank 0 made
    if info.is_main:
        from huberkl import config

        config.record_run(out_dir, data=data_record)
    train_set = load_split(cfg.data, "train", train=True, hflip=bool(d.hflip), seed=int(cfg.seed))
    if len(train_set) < d.batch_size * info.world_size:
        raise InputError(
            f"the train split {cfg.data.train_ann} has {len(train_set)} images, fewer than one "
            f"batch ({d.batch_size} x {info.world_size} processes)"
        )
    return train_set


def _trainable(
    cfg: DictConfig, num_classes: int, info: dist.DistInfo
) -> tuple[optim.Trainable, dict[str, Any]]:
    """The model on this rank's device (DDP-wrapped under torchrun), its optimiser and schedule."""
    d = cfg.detect
    model = make_model(cfg, num_classes).to(info.device)
    arch = ckpt.architecture(model, num_classes)
    if info.enabled and info.device.type == "cuda" and d.get("sync_bn", False):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.train()
    forward: torch.nn.Module = model
    if info.enabled:
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )
    return optim.trainable(model, forward, d, info.device), arch
