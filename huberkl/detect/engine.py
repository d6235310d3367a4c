"""Train a detector with the paper's box-loss settings, then score it with COCO mAP.

:func:`train` runs top to bottom: join torchrun's process group (if any), make sure the
dataset exists, build the model from ``detect.model`` and the ``params`` preset and its
optimiser and schedule (:mod:`.optim`), continue from a checkpoint if asked
(:mod:`.resume`), train (:mod:`.loop`), then score the val split (:mod:`.evaluation`).
Every iteration appends a row to ``losses.csv``; every ``detect.ckpt_every`` iterations,
on SIGINT/SIGTERM and at the end, rank 0 writes ``checkpoint.pt`` with everything needed
to continue exactly. On a CPU, with the same thread count, a resumed run ends with the same
weights, bit for bit, as an uninterrupted one, with or without loader workers
(:mod:`.loaders` says why). What may change on resume, and which data a run reads, are
:mod:`.runs` and :mod:`.sets`.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from huberkl.detect import checkpoint as ckpt
from huberkl.detect import dist, evaluation, loaders, loop, optim, resume, runs
from huberkl.errors import InputError

CHECKPOINT = runs.CHECKPOINT
LOSSES_CSV = runs.LOSSES_CSV
METRICS = evaluation.METRICS
DETECTIONS = evaluation.DETECTIONS
NonFiniteLossError = loop.NonFiniteLossError  # raised by the loop; callers catch it here


@dataclass
class TrainResult:
    """What :func:`train` leaves behind (files are in ``out_dir``)."""

    out_dir: Path
    iteration: int
    status: str  # finished | interrupted
    metrics: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    signal: int = 0  # the signal that stopped an interrupted run (exit code 128 + signal)


# ----------------------------------------------------------------------------- optimisation


# ----------------------------------------------------------------------------- model


def model_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.detect.model, resolve=True)  # type: ignore[return-value]


def preset_of(cfg: DictConfig):
    from huberkl.params import Preset

    return Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))


def make_model(cfg: DictConfig, num_classes: int) -> torch.nn.Module:
    """``build_model(detect.model, params preset, C)``; ``detect.model.weights`` loads a file."""
    from huberkl.detect.models import build_model

    return build_model(model_config(cfg), preset_of(cfg), num_classes)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# ----------------------------------------------------------------------------- evaluation


def evaluate_model(
    model: torch.nn.Module,
    dataset,
    info: dist.DistInfo,
    out_dir: Path | None,
    batch_size: int = 8,
    workers: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """COCO bbox metrics of ``model`` on all of ``dataset`` (:func:`.evaluation.evaluate`).

    Rank 0 writes ``metrics.json``, ``detections.json``, ``class_ap.csv`` and ``pr.png`` to
    ``out_dir``; other ranks return ``{}``.
    """
    from huberkl.detect.pictures import write_class_report

    def class_report(ev, rows: list[dict], img_ids: list[int], out: Path) -> None:
        write_class_report(dataset.coco, rows, img_ids, out, ev=ev)

    return evaluation.evaluate(
        unwrap(model),
        loaders.eval_loader(dataset, info, batch_size, workers),
        dataset.coco,
        info.device,
        dataset.label_to_cat_id,
        out_dir,
        img_ids=dataset.coco.getImgIds(),
        extra=extra,
        info=info,
        report=class_report,
    )


def evaluate_checkpoint(
    cfg: DictConfig, checkpoint: str | Path, split: str, out_dir: Path | None
) -> dict[str, float]:
    """Score a checkpoint on ``split``; a checkpoint from another architecture is an InputError."""
    d = cfg.detect
    info = dist.init(d.device)
    try:
        with _threads(d.get("threads")):
            state = ckpt.read_checkpoint(checkpoint)
            loaders.ensure_dataset(cfg.data, info)
            dataset = loaders.load_split(cfg.data, split, train=False)
            from huberkl.detect.models import build_from_checkpoint

            model = build_from_checkpoint(
                model_config(cfg), preset_of(cfg), int(dataset.num_classes), state, checkpoint
            )
            model.to(info.device)
            extra = {"iteration": int(state["iteration"]), "split": split}
            extra["checkpoint"] = str(checkpoint)
            metrics = evaluate_model(
                model,
                dataset,
                info,
                out_dir if info.is_main else None,
                batch_size=d.eval_batch_size,
                workers=d.workers,
                extra=extra,
            )
            dist.barrier()  # ranks leave together (see _train)
            return metrics
    finally:
        dist.destroy()


# ----------------------------------------------------------------------------- training


def train(
    cfg: DictConfig,
    out_dir: str | Path,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg.detect`` on ``cfg.data`` with ``cfg.params``; files go to ``out_dir`` (rank 0).

    ``on_iteration(i, losses)`` is called after each completed iteration (tests use it to
    raise a signal at a chosen point). Raises :class:`NonFiniteLossError` on a NaN/inf loss.
    """
    with _threads(cfg.detect.get("threads")):
        try:
            return _train(cfg, Path(out_dir), on_iteration)
        finally:
            dist.destroy()


@contextlib.contextmanager
def _threads(n: int | None):
    """``detect.threads`` intra-op threads for the duration (restored after: tests share a process)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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
    from huberkl.detect.logger import ScalarLog  # detect.log=tensorboard: also TensorBoard

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
        val_set = loaders.load_split(cfg.data, "val", train=False)
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
    data_record = loaders.ensure_dataset(cfg.data, info, lambda line: say(escape(line)))
    if info.is_main:
        from huberkl import config

        config.record_run(out_dir, data=data_record)
    train_set = loaders.load_split(
        cfg.data, "train", train=True, hflip=bool(d.hflip), seed=int(cfg.seed)
    )
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
