"""Train a detector with the paper's box-loss settings, then score it with COCO mAP.

Runs top to bottom in :func:`train`: join torchrun's process group (if any), make sure
the dataset exists, build the model from ``detect.model`` and the ``params`` preset, then
iterate: SGD with momentum or AdamW, linear warm-up then step or cosine decay, gradient
clipping, mixed precision on CUDA. Every iteration appends a row to ``losses.csv``; every
``detect.ckpt_every`` iterations, on SIGINT/SIGTERM and at the end, rank 0 writes
``checkpoint.pt`` with everything needed to continue exactly (:mod:`.checkpoint`).

Exact resume rests on three things: the data order is a pure function of (seed, epoch)
with a start offset (:class:`.dist.ResumableSampler`); each sample's augmentation is
seeded from (seed, epoch, index), so it does not depend on which worker loads it; and
the global RNG states (used by the detectors' anchor and RoI samplers) are saved per rank.
Loader workers ignore SIGINT/SIGTERM (a terminal's Ctrl-C and a scheduler's SIGTERM reach
the whole process group), so the main process alone decides when to stop and checkpoints.
On a CPU, with the same thread count, a resumed run ends with the same weights, bit for bit,
as an uninterrupted one, with or without loader workers. What may change on resume, and
which data a run reads, are :mod:`.runs` and :mod:`.sets`.
"""

from __future__ import annotations

import contextlib
import csv
import math
import random
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from huberkl.detect import checkpoint as ckpt
from huberkl.detect import dist, runs
from huberkl.detect.files import write_json
from huberkl.errors import InputError

CHECKPOINT = runs.CHECKPOINT
LOSSES_CSV = runs.LOSSES_CSV
METRICS = "metrics.json"
DETECTIONS = "detections.json"


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


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


def build_optimizer(
    params: Sequence[torch.nn.Parameter],
    name: str,
    lr: float,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    nesterov: bool = False,
) -> torch.optim.Optimizer:
    """SGD with momentum (the paper's detectors) or AdamW (trains tiny models from scratch fast)."""
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise InputError(f"detect.optim.name must be sgd or adamw, got {name!r}")


@dataclass
class WarmupSchedule:
    """LR factor at iteration ``i``: linear warm-up, then step or cosine decay (closed form).

    A callable object, not a closure, so that ``LambdaLR.state_dict`` stores it and a
    resumed run recomputes exactly the same learning rates.
    """

    iters: int
    name: str = "cosine"
    warmup_iters: int = 0
    warmup_factor: float = 1e-3
    milestones: tuple[float, ...] = (2 / 3, 8 / 9)  # fractions of ``iters`` (step schedule)
    gamma: float = 0.1
    min_factor: float = 0.0  # cosine: final LR as a fraction of the base LR

    def __post_init__(self) -> None:
        if self.name not in ("step", "cosine", "constant"):
            raise InputError(
                f"detect.schedule.name must be step, cosine or constant, got {self.name!r}"
            )
        if any(not 0 < m < 1 for m in self.milestones):
            raise InputError(
                f"detect.schedule.milestones are fractions of detect.iters in (0, 1), got {list(self.milestones)}"
            )

    def __call__(self, i: int) -> float:
        warm = 1.0
        if i < self.warmup_iters:
            a = i / self.warmup_iters
            warm = self.warmup_factor * (1 - a) + a
        if self.name == "step":
            decay = self.gamma ** sum(i >= round(m * self.iters) for m in self.milestones)
        elif self.name == "cosine":
            t = min(i, self.iters) / max(self.iters, 1)
            decay = self.min_factor + (1 - self.min_factor) * 0.5 * (1 + math.cos(math.pi * t))
        else:
            decay = 1.0
        return warm * decay


def _follow_schedule(
    scheduler: torch.optim.lr_scheduler.LambdaLR, schedule: WarmupSchedule, iteration: int
) -> None:
    """After loading a checkpoint, let the config's schedule set the learning rate from here on.

    ``LambdaLR.load_state_dict`` copies the checkpoint's schedule fields into the config's
    schedule object (a run extended from 1000 to 2000 iterations would keep decaying to 0 at
    1000); this puts the config's fields back and sets this iteration's rate as
    ``LambdaLR`` does (``base_lr * factor(iteration)``), the same float when nothing changed.
    ``schedule`` is a new object built from the config (the one given to ``LambdaLR`` was
    overwritten).
    """
    scheduler.lr_lambdas = [schedule for _ in scheduler.optimizer.param_groups]
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = base * schedule(iteration)
    scheduler._last_lr = [g["lr"] for g in scheduler.optimizer.param_groups]


# ----------------------------------------------------------------------------- data


class SeededSamples(Dataset):
    """Wraps a dataset so that item ``(epoch, index)`` is drawn under its own RNG seed.

    Random augmentation then depends only on (seed, epoch, index): the same in a resumed
    run, with any number of loader workers. The global RNG streams are left untouched.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):  # in the worker's copy, so workers agree
            self.dataset.set_epoch(epoch)
        s = int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0])
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(s)
                random.seed(s)
                np.random.seed(s)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def ensure_dataset(data_cfg: DictConfig, info: dist.DistInfo, say=None) -> dict:
    """Rank 0 makes sure the data is on disk (:func:`.sets.ensure_dataset`); what is read."""
    from huberkl.detect import sets

    record = sets.ensure_dataset(data_cfg, say) if info.is_main else {}
    dist.barrier()
    return record


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which checkpoints first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def load_split(data_cfg: DictConfig, split: str, train: bool, **kwargs):
    """The ``CocoDetection`` dataset of ``split`` (train | val) as ``data.<split>_*`` names it."""
    from huberkl.detect import data

    return data.load_split(data_cfg, split, train=train, **kwargs)


def eval_loader(dataset, info: dist.DistInfo, batch_size: int, workers: int) -> DataLoader:
    """This rank's share of ``dataset`` in order, each image exactly once over all ranks."""
    from huberkl.detect.data import collate_fn

    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=dist.shard(len(dataset), info.rank, info.world_size),
        num_workers=workers,
        collate_fn=collate_fn,
    )


# ----------------------------------------------------------------------------- model


def model_config(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg.detect.model, resolve=True)  # type: ignore[return-value]


def preset_of(cfg: DictConfig):
    from huberkl.params import Preset

    return Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))


def make_model(cfg: DictConfig, num_classes: int, pretrained: bool = True) -> torch.nn.Module:
    """``build_model(detect.model, params preset, C)``; ``pretrained=False`` skips the
    ``weights``/``backbone_weights`` files when a checkpoint supplies every tensor anyway."""
    from huberkl.detect.models import build_model

    model_cfg = model_config(cfg)
    if not pretrained:
        model_cfg = {**model_cfg, "weights": None, "backbone_weights": None}
    return build_model(model_cfg, preset_of(cfg), num_classes)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_model(
    model: torch.nn.Module,
    dataset,
    info: dist.DistInfo,
    out_dir: Path | None,
    batch_size: int = 8,
    workers: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """COCO bbox metrics of ``model`` on ``dataset``: every rank predicts its shard, rank 0 scores.

    Rank 0 writes ``metrics.json`` (AP, AP50, AP75, APs/m/l, ... plus the image count) and
    ``detections.json`` (COCO results format) to ``out_dir``; other ranks return ``{}``.
    """
    from huberkl.detect.evaluation import coco_metrics, predict

    model = unwrap(model)
    was_training = model.training
    model.eval()
    loader = eval_loader(dataset, info, batch_size, workers)
    rows = predict(model, loader, info.device, dataset.label_to_cat_id)
    model.train(was_training)
    gathered = dist.gather_objects(rows)
    if not info.is_main:
        return {}
    rows = [r for part in gathered for r in part]
    img_ids = sorted(dataset.coco.getImgIds())
    metrics = dict(coco_metrics(dataset.coco, rows, img_ids=img_ids))
    metrics["images"] = len(img_ids)
    metrics["detections"] = len(rows)
    if extra:
        metrics.update(extra)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / METRICS, metrics, indent=1)
        write_json(out_dir / DETECTIONS, rows)
        from huberkl.detect.pictures import write_class_report  # class_ap.csv, pr.png

        write_class_report(dataset.coco, rows, img_ids, out_dir)
    return metrics


# ----------------------------------------------------------------------------- checkpoints


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_tuples(state["python"]))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


# ----------------------------------------------------------------------------- training


class _StopFlag:
    """SIGINT/SIGTERM ask for a checkpoint and a clean stop; a second Ctrl-C aborts."""

    def __init__(self, say: Callable[[str], None]):
        self.signum = 0
        self.say = say
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for s in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not the main thread: leave the handlers alone
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.signum and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        self.say(
            f"{signal.Signals(signum).name}: saving a checkpoint after this iteration "
            "(Ctrl-C again to abort)"
        )

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def _progress(enabled: bool):
    from rich.progress import TextColumn

    from huberkl.progress import progress_bar

    return progress_bar("", TextColumn("{task.fields[losses]}"), enabled=enabled)


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
    torch.manual_seed(seed + info.rank)
    np.random.seed((seed + info.rank) % 2**32)
    random.seed(seed + info.rank)

    resume_path = runs.check_out_dir(cfg, out_dir)
    from rich.markup import escape

    data_record = ensure_dataset(cfg.data, info, lambda line: say(escape(line)))
    if info.is_main:
        from huberkl import config

        config.record_run(out_dir, data=data_record)
    train_set = load_split(cfg.data, "train", train=True, hflip=bool(d.hflip), seed=seed)
    if len(train_set) < d.batch_size * info.world_size:
        raise InputError(
            f"the train split {cfg.data.train_ann} has {len(train_set)} images, fewer than one "
            f"batch ({d.batch_size} x {info.world_size} processes)"
        )
    num_classes = int(train_set.num_classes)

    model = make_model(cfg, num_classes).to(info.device)
    arch = ckpt.architecture(model, num_classes)
    if info.enabled and info.device.type == "cuda" and d.get("sync_bn", False):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.train()
    ddp_model: torch.nn.Module = model
    if info.enabled:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[info.device.index] if info.device.type == "cuda" else None
        )

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, **OmegaConf.to_container(d.optim, resolve=True))
    sched_cfg = OmegaConf.to_container(d.schedule, resolve=True)
    sched_cfg["milestones"] = tuple(sched_cfg.get("milestones", ()))
    schedule = WarmupSchedule(iters=int(d.iters), **sched_cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    use_amp = bool(d.amp) and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    start_iter = 0
    config_dict = OmegaConf.to_container(cfg, resolve=True)
    if resume_path is not None:
        state = ckpt.read_checkpoint(resume_path)
        changed = runs.check_continuation(state.get("config", {}), config_dict, resume_path)
        ckpt.check_architecture(resume_path, state["arch"], arch)
        ckpt.load_model_state(model, state, resume_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_iter = int(state["iteration"])
        _follow_schedule(scheduler, WarmupSchedule(iters=int(d.iters), **sched_cfg), start_iter)
        rngs = state["rng"]
        if len(rngs) == info.world_size:
            _set_rng_state(rngs[info.rank])
        else:
            say(
                f"[yellow]checkpoint was written by {len(rngs)} processes, this run has "
                f"{info.world_size}: data order continues, RNG streams restart[/]"
            )
        if changed:
            follows = any(runs.under(k, runs.SCHEDULE) for k in changed)
            note = " (the learning rate follows the new schedule)" if follows else ""
            say(f"[yellow]resuming with changed settings: {runs.describe(changed)}{note}[/]")
        lr = optimizer.param_groups[0]["lr"]
        say(f"resuming from {resume_path} at iteration {start_iter} (lr {lr:.3g})")

    # Data order: a DistributedSampler permutation per epoch, seeded by the run's seed.
    from huberkl.detect.data import collate_fn

    sampler = dist.ResumableSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, seed=seed
    )
    per_epoch = len(sampler) // d.batch_size
    loader = DataLoader(
        SeededSamples(train_set, seed),
        batch_size=d.batch_size,
        sampler=sampler,
        num_workers=d.workers,
        collate_fn=collate_fn,
        drop_last=True,
        persistent_workers=d.workers > 0,
        worker_init_fn=_ignore_stop_signals,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG out of it
        pin_memory=info.device.type == "cuda",
    )

    csv_path = out_dir / LOSSES_CSV
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _truncate_csv(csv_path, start_iter)
    from huberkl.detect.logger import ScalarLog  # detect.log=tensorboard: also TensorBoard

    scalar_log = ScalarLog(str(d.get("log", "csv")) if info.is_main else "csv", out_dir, start_iter)

    def save(iteration: int) -> None:
        rngs = dist.gather_objects(_rng_state())
        if info.is_main:
            ckpt.save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "iteration": iteration,
                    "epoch": iteration // per_epoch,
                    "epoch_start": (iteration % per_epoch) * d.batch_size,
                    "rng": rngs,
                    "arch": arch,
                    "world_size": info.world_size,
                    "config": config_dict,
                    "categories": train_set.coco.dataset["categories"],  # names for predict
                    "config_source": OmegaConf.to_container(cfg, resolve=False),
                },
                out_dir / CHECKPOINT,
            )

    total = int(d.iters)
    it = start_iter
    status = "finished"
    stop_sig = 0
    writer = None
    csv_file = None
    last_saved = start_iter if resume_path is not None else None
    with _StopFlag(say) as stop, _progress(info.is_main) as progress:
        task = progress.add_task("train", total=total, completed=it, losses="")
        try:
            while it < total and not stop.signum:
                epoch, offset = divmod(it, per_epoch)
                sampler.set_epoch(epoch)
                sampler.set_start(offset * d.batch_size)
                for images, targets in loader:
                    images = [im.to(info.device, non_blocking=True) for im in images]
                    targets = [
                        {k: v.to(info.device) if torch.is_tensor(v) else v for k, v in t.items()}
                        for t in targets
                    ]
                    with torch.autocast(info.device.type, enabled=use_amp):
                        loss_dict = ddp_model(images, targets)
                    loss = sum(loss_dict.values())
                    # Averaged over ranks: every rank sees the same values and stops together.
                    names = list(loss_dict)
                    vals = torch.stack(
                        [loss.detach().float(), *[v.detach().float() for v in loss_dict.values()]]
                    )
                    vals = dist.all_reduce_mean(vals).tolist()
                    logged = {"loss": vals[0], **dict(zip(names, vals[1:], strict=True))}
                    if not all(math.isfinite(v) for v in logged.values()):
                        bad = ", ".join(f"{k}={v:.4g}" for k, v in logged.items())
                        where = (
                            f"last good checkpoint: {out_dir / CHECKPOINT} (iteration {last_saved})"
                            if last_saved is not None
                            else "no checkpoint was saved yet"
                        )
                        raise NonFiniteLossError(
                            f"non-finite loss at iteration {it + 1} ({bad}); stopped; {where}"
                        )
                    optimizer.zero_grad(set_to_none=True)
                    scaler.scale(loss).backward()
                    if d.clip_grad_norm:
                        scaler.unscale_(optimizer)
                        torch.nn.utils.clip_grad_norm_(params, d.clip_grad_norm)
                    scaler.step(optimizer)
                    scaler.update()
                    lr = optimizer.param_groups[0]["lr"]
                    scheduler.step()
                    it += 1

                    if info.is_main:
                        if writer is None:
                            csv_file, writer = _open_csv(csv_path, ["iteration", "lr", *logged])
                        writer.writerow(
                            {"iteration": it, "lr": f"{lr:.6g}"}
                            | {k: f"{v:.6g}" for k, v in logged.items()}
                        )
                        csv_file.flush()
                        scalar_log.scalars(it, {"lr": lr, **logged}, "train/")
                        progress.update(
                            task,
                            completed=it,
                            losses=" ".join(_short(k, v) for k, v in logged.items()),
                        )
                    if on_iteration is not None:
                        on_iteration(it, logged)
                    stop_sig = dist.max_over_ranks(stop.signum, info.device)
                    stop_now = stop_sig > 0
                    if stop_now or it == total or (d.ckpt_every and it % d.ckpt_every == 0):
                        save(it)
                        last_saved = it
                    if stop_now:
                        status = "interrupted"
                        break
                    if it >= total:
                        break
                if status == "interrupted":
                    break
        finally:
            if csv_file is not None:
                csv_file.close()

    metrics: dict[str, float] = {}
    if status == "finished" and d.get("eval", True):
        val_set = load_split(cfg.data, "val", train=False)
        say(f"evaluating on {len(val_set)} val images")
        metrics = evaluate_model(
            model,
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


def evaluate_checkpoint(
    cfg: DictConfig, checkpoint: str | Path, split: str, out_dir: Path | None
) -> dict[str, float]:
    """Score a checkpoint on ``split``; a checkpoint from another architecture is an InputError."""
    d = cfg.detect
    info = dist.init(d.device)
    try:
        with _threads(d.get("threads")):
            state = ckpt.read_checkpoint(checkpoint)
            ensure_dataset(cfg.data, info)
            dataset = load_split(cfg.data, split, train=False)
            model = make_model(cfg, int(dataset.num_classes), pretrained=False)
            arch = ckpt.architecture(model, int(dataset.num_classes))
            ckpt.check_architecture(checkpoint, state["arch"], arch)
            ckpt.load_model_state(model, state, checkpoint)
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


_SHORT = {
    "loss_classifier": "cls",
    "loss_box_reg": "box",
    "loss_objectness": "obj",
    "loss_rpn_box_reg": "rbox",
    "classification": "cls",
    "bbox_regression": "box",
}


def _short(name: str, value: float) -> str:
    return f"{_SHORT.get(name, name)} {value:.3f}"


def _open_csv(path: Path, columns: list[str]):
    new = not path.is_file() or path.stat().st_size == 0
    fh = path.open("a", newline="", encoding="utf-8")
    writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
    if new:
        writer.writeheader()
    return fh, writer


def _truncate_csv(path: Path, iteration: int) -> None:
    """Drop rows after ``iteration`` (a resumed run writes them again)."""
    if not path.is_file():
        return
    if iteration == 0:
        path.unlink()
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= iteration]
    path.write_text("".join(keep), encoding="utf-8")
