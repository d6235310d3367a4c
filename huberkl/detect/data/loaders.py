"""The data a run reads, as loaders whose order and augmentation survive a resume.

The training order is a pure function of (seed, epoch) with a start offset
(:class:`huberkl.detect.dist.ResumableSampler`), and each sample's augmentation is seeded from
(seed, epoch, index) (:class:`SeededSamples`), so neither depends on which loader worker
reads it nor on where a run was interrupted. Loader workers ignore SIGINT/SIGTERM (a
terminal's Ctrl-C and a scheduler's SIGTERM reach the whole process group): the main
process alone decides when to stop, and checkpoints first. Which data a run reads is
:mod:`.sets`; the datasets themselves are :mod:`.datasets`.
"""

from __future__ import annotations

import random
import signal
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from huberkl.detect import dist
from huberkl.detect.data.datasets import collate_fn


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


def _ignore_stop_signals(worker_id: int) -> None:
    """Loader workers leave SIGINT/SIGTERM to the main process, which checkpoints first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def eval_loader(dataset, info: dist.DistInfo, batch_size: int, workers: int) -> DataLoader:
    """This rank's share of ``dataset`` in order, each image exactly once over all ranks."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=dist.shard(len(dataset), info.rank, info.world_size),
        num_workers=workers,
        collate_fn=collate_fn,
    )


@dataclass
class TrainData:
    """The training loader and the sampler that positions it (epoch, start offset)."""

    loader: DataLoader
    sampler: dist.ResumableSampler
    batch_size: int
    per_epoch: int  # iterations in one epoch (the last incomplete batch is dropped)

    def close(self) -> None:
        """Stop the persistent loader workers now. Left to interpreter exit, they would be
        stopped with SIGTERM, which they ignore, and the exit would wait for them forever
        (seen in 2 of 3 short runs): the same shutdown as an exhausted iterator's instead."""
        it = getattr(self.loader, "_iterator", None)
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
        for w in getattr(it, "_workers", []):
            if w.is_alive():  # pragma: no cover - only if a worker failed to exit
                w.kill()
                w.join()
        self.loader._iterator = None  # type: ignore[attr-defined]

    def start_at(self, iteration: int) -> None:
        """Make the next pass over ``loader`` begin with batch ``iteration`` of the run."""
        epoch, offset = divmod(iteration, self.per_epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.set_start(offset * self.batch_size)


def train_loader(
    train_set, info: dist.DistInfo, batch_size: int, workers: int, seed: int
) -> TrainData:
    """Data order: a DistributedSampler permutation per epoch, seeded by the run's seed."""
    sampler = dist.ResumableSampler(
        train_set, num_replicas=info.world_size, rank=info.rank, seed=seed
    )
    loader = DataLoader(
        SeededSamples(train_set, seed),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_fn,
        drop_last=True,
        persistent_workers=workers > 0,
        worker_init_fn=_ignore_stop_signals,
        generator=torch.Generator().manual_seed(seed),  # keeps the global RNG out of it
        pin_memory=info.device.type == "cuda",
    )
    return TrainData(loader, sampler, batch_size, len(sampler) // batch_size)
