"""Data-parallel training from torchrun's environment (nanoGPT's recipe, torchvision's sampler).

Launch on one machine with two processes (gloo on CPUs, nccl on GPUs)::

    torchrun --nproc_per_node=2 -m huberkl.cli detect --out runs/ddp detect.iters=200

and on several nodes with ``--nnodes``/``--rdzv-endpoint`` as usual. Without torchrun's
``RANK``/``LOCAL_RANK``/``WORLD_SIZE`` everything here degrades to a single process.
Only rank 0 logs, writes files and saves checkpoints; every rank offsets its seed by its
rank; predictions are gathered to rank 0 for COCO evaluation. Every stage of ``detect``
uses this module: the loaders (samplers), training and evaluation (ranks, gathers), and
:func:`threads` sets a run's intra-op threads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch.utils.data import DistributedSampler


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global rank, rank on its node, number of processes, device."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> tuple[int, int, int]:
    """(RANK, LOCAL_RANK, WORLD_SIZE) as torchrun sets them; (0, 0, 1) otherwise."""
    return (
        int(os.environ.get("RANK", 0)),
        int(os.environ.get("LOCAL_RANK", 0)),
        int(os.environ.get("WORLD_SIZE", 1)),
    )


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> this rank's GPU when there is one, else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        from huberkl.errors import InputError

        raise InputError("detect.device=cuda but no CUDA device is available; use auto or cpu")
    if name == "cuda":
        return torch.device("cuda", local_rank)
    return torch.device(name)


def init(device: str = "auto") -> DistInfo:
    """Join the process group torchrun set up (if any) and pick this rank's device."""
    rank, local_rank, world_size = from_env()
    dev = pick_device(device, local_rank)
    if world_size > 1 and not tdist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        tdist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, local_rank, world_size, dev)


@contextlib.contextmanager
def threads(n: int | None) -> Iterator[None]:
    """``detect.threads`` intra-op threads for the duration (restored after: tests share a process)."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def destroy() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier() -> None:
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a small 1-D tensor (losses, stop flags); identity without DDP."""
    if tdist.is_available() and tdist.is_initialized():
        values = values.clone()
        tdist.all_reduce(values)
        values /= tdist.get_world_size()
    return values


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank if ``flag`` is true on any (a signal seen by one rank stops all)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return bool(flag)
    t = torch.tensor([float(flag)], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return bool(t.item() > 0)


def max_over_ranks(value: int, device: torch.device) -> int:
    """The largest ``value`` over ranks (the signal one rank saw stops all with its code)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return int(value)
    t = torch.tensor([float(value)], device=device)
    tdist.all_reduce(t, op=tdist.ReduceOp.MAX)
    return int(t.item())


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` on every rank, in rank order (``[obj]`` without DDP)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return [obj]
    out: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the run folder it chose)."""
    if not (tdist.is_available() and tdist.is_initialized()):
        return obj
    box = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


class ResumableSampler(DistributedSampler):
    """torch's ``DistributedSampler`` that can start part-way into an epoch.

    ``set_epoch`` fixes the permutation (seeded by ``seed + epoch``, as upstream), and
    ``set_start(n)`` skips this rank's first ``n`` indices, so a resumed run draws exactly
    the samples the interrupted one would have drawn next. Each index is yielded as
    ``(epoch, index)`` so that per-sample augmentation can be seeded from it.
    """

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int, shuffle: bool = True):
        super().__init__(
            dataset,
            num_replicas=num_replicas,
            rank=rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=True,
        )
        self.start = 0

    def set_start(self, start: int) -> None:
        self.start = start

    def __iter__(self):
        indices = list(super().__iter__())
        for i in indices[self.start :]:
            yield (self.epoch, i)

    def __len__(self) -> int:
        return self.num_samples - self.start


def shard(n: int, rank: int, world_size: int) -> list[int]:
    """Evaluation indices of one rank: every image exactly once over all ranks (no padding)."""
    return list(range(rank, n, world_size))
