"""Scalars beside ``losses.csv``: ``detect.log=tensorboard`` also writes TensorBoard events.

``losses.csv`` is always written (a resumed run truncates and continues it, and the
reports read it); with ``tensorboard`` the loss terms, learning rate and final evaluation
metrics also go to ``tb/`` through ``torch.utils.tensorboard.SummaryWriter``. A resumed
run purges the events after its start iteration (steps are the iterations completed), so the curves have no doubled steps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from huberkl.errors import InputError

LOGS = ("csv", "tensorboard")
TB_DIR = "tb"


class ScalarLog:
    """Where training scalars go besides ``losses.csv``; ``csv`` alone is a no-op sink."""

    def __init__(self, kind: str, out_dir: str | Path, start_iter: int = 0) -> None:
        if kind not in LOGS:
            raise InputError(f"detect.log must be one of {'|'.join(LOGS)}, got {kind!r}")
        self.kind = kind
        self.writer = None
        if kind == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(
                str(Path(out_dir) / TB_DIR), purge_step=start_iter + 1 if start_iter else None
            )

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        """Log every numeric value under ``prefix + name`` at ``step`` (others are skipped)."""
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"{prefix}{name}", float(value), step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


__all__ = ["LOGS", "TB_DIR", "ScalarLog"]
