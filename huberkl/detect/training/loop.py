"""The training loop: one optimiser step per batch until ``detect.iters`` or a stop signal.

torchvision's references keep theirs in ``engine.py`` (``train_one_epoch``); here
:func:`run` is called by :func:`huberkl.detect.training.train.train`.

Each iteration averages the loss terms over ranks (every rank sees the same values, so all
stop together on a NaN or a signal), appends a row to ``losses.csv`` (rank 0), and every
``detect.ckpt_every`` iterations, on SIGINT/SIGTERM and at the end saves a checkpoint
(:class:`.resume.Checkpointer`). A signal asks for a checkpoint after the current
iteration; a second Ctrl-C aborts at once.
"""

from __future__ import annotations

import csv
import math
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from huberkl.detect import dist
from huberkl.detect.data.loaders import TrainData
from huberkl.detect.training.optim import Trainable
from huberkl.detect.training.resume import Checkpointer


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left in place."""


class StopFlag:
    """SIGINT/SIGTERM ask for a checkpoint and a clean stop; a second Ctrl-C aborts."""

    def __init__(self, say: Callable[[str], None]):
        self.signum = 0
        self.say = say
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopFlag:
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


# ----------------------------------------------------------------------------- losses.csv

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


def truncate_csv(path: Path, iteration: int) -> None:
    """Drop rows after ``iteration`` (a resumed run writes them again)."""
    if not path.is_file():
        return
    if iteration == 0:
        path.unlink()
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    keep = lines[:1] + [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= iteration]
    path.write_text("".join(keep), encoding="utf-8")


class LossLog:
    """Rank 0's record of each iteration: ``losses.csv``, the scalar log, the progress bar."""

    def __init__(self, path: Path, enabled: bool, scalar_log, progress, task) -> None:
        self.path, self.enabled = path, enabled
        self.scalar_log, self.progress, self.task = scalar_log, progress, task
        self._file = None
        self._writer = None

    def row(self, it: int, lr: float, logged: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self._writer is None:
            self._file, self._writer = _open_csv(self.path, ["iteration", "lr", *logged])
        self._writer.writerow(
            {"iteration": it, "lr": f"{lr:.6g}"} | {k: f"{v:.6g}" for k, v in logged.items()}
        )
        self._file.flush()
        self.scalar_log.scalars(it, {"lr": lr, **logged}, "train/")
        losses = " ".join(_short(k, v) for k, v in logged.items())
        self.progress.update(self.task, completed=it, losses=losses)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def progress_bar(enabled: bool):
    from rich.progress import TextColumn

    from huberkl.progress import progress_bar as bar

    return bar("", TextColumn("{task.fields[losses]}"), enabled=enabled)


# ----------------------------------------------------------------------------- the loop


def forward(t: Trainable, images, targets, device: torch.device):
    """The summed loss and its terms averaged over ranks (``loss`` first) as floats."""
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [
        {k: v.to(device) if torch.is_tensor(v) else v for k, v in tgt.items()} for tgt in targets
    ]
    with torch.autocast(device.type, enabled=t.use_amp):
        loss_dict = t.forward(images, targets)
    loss = sum(loss_dict.values())
    # Averaged over ranks: every rank sees the same values and stops together.
    names = list(loss_dict)
    vals = torch.stack([loss.detach().float(), *[v.detach().float() for v in loss_dict.values()]])
    vals = dist.all_reduce_mean(vals).tolist()
    return loss, {"loss": vals[0], **dict(zip(names, vals[1:], strict=True))}


@dataclass
class Plan:
    """How far to train and when to checkpoint (``ckpt_every=0``: only at the end or a stop)."""

    total: int
    ckpt_every: int


def run(
    t: Trainable,
    data: TrainData,
    plan: Plan,
    start: int,
    saver: Checkpointer,
    log: LossLog,
    stop: StopFlag,
    device: torch.device,
    on_iteration: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[int, int]:
    """Train from iteration ``start``; (iterations done, the signal that stopped it or 0)."""
    it, stop_sig = start, 0
    while it < plan.total and not stop.signum:
        data.start_at(it)
        for images, targets in data.loader:
            loss, logged = forward(t, images, targets, device)
            if not all(math.isfinite(v) for v in logged.values()):
                bad = ", ".join(f"{k}={v:.4g}" for k, v in logged.items())
                raise NonFiniteLossError(
                    f"non-finite loss at iteration {it + 1} ({bad}); stopped; {saver.where()}"
                )
            lr = t.step(loss)
            it += 1
            log.row(it, lr, logged)
            if on_iteration is not None:
                on_iteration(it, logged)
            stop_sig = dist.max_over_ranks(stop.signum, device)
            if stop_sig > 0 or it == plan.total or (plan.ckpt_every and it % plan.ckpt_every == 0):
                saver.save(it)
            if stop_sig > 0 or it >= plan.total:
                break
        if stop_sig > 0:
            break
    return it, stop_sig
