"""Optimiser and learning-rate schedule: what turns a loss into a weight update.

SGD with momentum (the paper's detectors) or AdamW, a closed-form schedule (linear warm-up,
then step or cosine decay) wrapped in ``LambdaLR`` so that its state travels in the
checkpoint, and a grad scaler for mixed precision on CUDA. :class:`Trainable` bundles what
one optimisation step touches, so the loop (:mod:`.loop`) and the checkpoint
(:mod:`.resume`) see the same objects.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from huberkl.errors import InputError


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


def schedule_from(d: DictConfig) -> WarmupSchedule:
    """The schedule ``detect.schedule`` describes over ``detect.iters`` iterations."""
    sched_cfg: dict[str, Any] = OmegaConf.to_container(d.schedule, resolve=True)  # type: ignore[assignment]
    sched_cfg["milestones"] = tuple(sched_cfg.get("milestones", ()))
    return WarmupSchedule(iters=int(d.iters), **sched_cfg)


def follow_schedule(
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


@dataclass
class Trainable:
    """The model (plain and as called: DDP-wrapped or not) and what updates its weights."""

    model: torch.nn.Module
    forward: torch.nn.Module  # ``model`` or its DistributedDataParallel wrapper
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    use_amp: bool
    clip_grad_norm: float | None

    def step(self, loss: torch.Tensor) -> float:
        """Backward, clip, optimiser and scheduler step; the learning rate this step used."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.clip_grad_norm:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()
        return lr


def trainable(
    model: torch.nn.Module, forward: torch.nn.Module, d: DictConfig, device: torch.device
) -> Trainable:
    """``detect.optim`` and ``detect.schedule`` applied to ``model``'s trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, **OmegaConf.to_container(d.optim, resolve=True))  # type: ignore[arg-type]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_from(d))
    use_amp = bool(d.amp) and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    return Trainable(
        model, forward, params, optimizer, scheduler, scaler, use_amp, d.clip_grad_norm
    )
