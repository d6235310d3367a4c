"""Save a training run's whole state, and continue it exactly where it stopped.

:class:`Checkpointer` writes everything a continuation needs (:mod:`.checkpoint` writes it
atomically): model, optimiser, scheduler and grad-scaler states, the data-order position
(epoch and start offset), each rank's RNG states and the run's config. :func:`restore`
loads it back after checking that the run may continue with this config (:mod:`.runs`)
and this architecture (:mod:`.checkpoint`). The global RNG states matter because the
detectors' anchor and RoI samplers draw from them; with them, a resumed run on a CPU ends
with the same weights, bit for bit, as an uninterrupted one.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from huberkl.detect import dist
from huberkl.detect.training import checkpoint as ckpt
from huberkl.detect.training import runs
from huberkl.detect.training.optim import Trainable, WarmupSchedule, follow_schedule


def rng_state() -> dict[str, Any]:
    """This process's torch, CUDA, NumPy and Python RNG states (NumPy's as a tensor: weights_only)."""
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(_tuples(state["python"]))


def _tuples(x):
    return tuple(_tuples(v) for v in x) if isinstance(x, (list, tuple)) else x


class Checkpointer:
    """Writes ``path`` (rank 0) with the run's state at an iteration; remembers the last one."""

    def __init__(
        self,
        t: Trainable,
        path: Path,
        info: dist.DistInfo,
        per_epoch: int,
        batch_size: int,
        run: Mapping[str, Any],
        last: int | None = None,
    ) -> None:
        self.t, self.path, self.info = t, path, info
        self.per_epoch, self.batch_size = per_epoch, batch_size
        self.run = run  # arch, world_size, config, categories, config_source
        self.last = last

    def save(self, iteration: int) -> None:
        rngs = dist.gather_objects(rng_state())  # every rank takes part in the gather
        if self.info.is_main:
            self._write(iteration, rngs)
        self.last = iteration

    def _write(self, iteration: int, rngs: list[Any]) -> None:
        t = self.t
        state = {
            "model": t.model.state_dict(),
            "optimizer": t.optimizer.state_dict(),
            "scheduler": t.scheduler.state_dict(),
            "scaler": t.scaler.state_dict(),
            "iteration": iteration,
            "epoch": iteration // self.per_epoch,
            "epoch_start": (iteration % self.per_epoch) * self.batch_size,
            "rng": rngs,
            "arch": self.run["arch"],
            "world_size": self.run["world_size"],
            "config": self.run["config"],
            "categories": self.run["categories"],  # names for predict
            "config_source": self.run["config_source"],
        }
        ckpt.save_checkpoint(state, self.path)

    def where(self) -> str:
        """Where a stopped run can be picked up (for error messages)."""
        if self.last is None:
            return "no checkpoint was saved yet"
        return f"last good checkpoint: {self.path} (iteration {self.last})"


def restore(
    path: Path,
    t: Trainable,
    arch: Mapping[str, Any],
    config: Mapping[str, Any],
    schedule: WarmupSchedule,
    info: dist.DistInfo,
    say: Callable[[str], None],
) -> int:
    """Load ``path`` into ``t`` and this rank's RNGs; the iteration to continue from.

    Refuses (InputError) a run-defining change of config or another architecture;
    ``schedule`` is a fresh object from the config, which the learning rate follows.
    """
    state = ckpt.read_checkpoint(path)
    changed = runs.check_continuation(state.get("config", {}), config, path)
    ckpt.check_architecture(path, state["arch"], arch)
    ckpt.load_model_state(t.model, state, path)
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    t.scaler.load_state_dict(state["scaler"])
    start = int(state["iteration"])
    follow_schedule(t.scheduler, schedule, start)
    rngs = state["rng"]
    if len(rngs) == info.world_size:
        set_rng_state(rngs[info.rank])
    else:
        say(
            f"[yellow]checkpoint was written by {len(rngs)} processes, this run has "
            f"{info.world_size}: data order continues, RNG streams restart[/]"
        )
    if changed:
        follows = any(runs.under(k, runs.SCHEDULE) for k in changed)
        note = " (the learning rate follows the new schedule)" if follows else ""
        say(f"[yellow]resuming with changed settings: {runs.describe(changed)}{note}[/]")
    lr = t.optimizer.param_groups[0]["lr"]
    say(f"resuming from {path} at iteration {start} (lr {lr:.3g})")
    return start
