"""A deterministic stand-in detector for the data-parallel test, and its torchrun entry point.

``BoxRegressor`` predicts each image's mean box from 8x8-pooled pixels with one linear
layer: no batch norm, no random sampling, a loss that is a mean over the batch. So two
ranks with half a batch each, their gradients averaged by DDP, must train exactly what one
process trains on the whole batch (up to float summation order).

    torchrun --nproc_per_node=2 tests/helpers/ddp_regressor.py OUT_DIR OVERRIDE...

trains through ``huberkl.detect.training.train.train`` and saves each rank's final
parameters to ``OUT_DIR/rank<r>.pt``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.nn.functional as F


class BoxRegressor(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(3 * 8 * 8, 4)

    def forward(self, images, targets=None):
        x = torch.stack([F.adaptive_avg_pool2d(im, 8).flatten() for im in images])
        want = torch.stack([t["boxes"].mean(0) for t in targets]) / 64
        return {"loss_box": F.mse_loss(self.fc(x), want)}


def train(overrides: list[str], out_dir: Path) -> dict[str, torch.Tensor]:
    """``training.train`` with the regressor in place of the detector; this rank's parameters."""
    from huberkl import config
    from huberkl.detect.training import train as training

    built: list[torch.nn.Module] = []

    def make_model(cfg, num_classes):
        built.append(BoxRegressor())
        return built[-1]

    training.make_model, original = make_model, training.make_model
    try:
        training.train(config.compose(overrides), out_dir)
    finally:
        training.make_model = original
    return {k: v.detach().clone() for k, v in built[0].state_dict().items()}


if __name__ == "__main__":
    import os

    out = Path(sys.argv[1])
    params = train(sys.argv[2:], out)
    torch.save(params, out / f"rank{os.environ['RANK']}.pt")
