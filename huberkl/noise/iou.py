"""Mean IoU between two annotators as a function of the noise scale, and its inverse.

Dataset papers often report the mean IoU between two annotations of the same boxes rather
than a noise scale. With each annotation's error (x, y, w, h) drawn from one family with
scale s per coordinate (docs/NOISE.md, "Target parametrisation"), the IoU of the two boxes
depends on the errors only (the true box is the unit box), so the mean IoU is a function
of s alone: computed here by Monte Carlo with common random numbers on a grid of scales,
and inverted by interpolation in log-scale. ``kind="gold"``: one annotation against the
exact box instead of two against each other.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from huberkl.distributions import check_family, sample
from huberkl.errors import InputError
from huberkl.noise.fit import check_mode
from huberkl.noise.matching import pair_iou

GRID = np.geomspace(1e-3, 3.0, 90)
DRAWS = 200_000
_CLIP = 40.0  # a log-size move of 40 is an IoU of ~e^-40 either way; keeps exp finite


def _boxes(e: np.ndarray) -> np.ndarray:
    """xywh boxes from errors against the unit box centred at the origin."""
    w, h = np.exp(np.clip(e[:, 2], -_CLIP, _CLIP)), np.exp(np.clip(e[:, 3], -_CLIP, _CLIP))
    return np.stack([e[:, 0] - w / 2, e[:, 1] - h / 2, w, h], axis=1)


def simulate_iou(
    family: str, scale: float, kind: str = "peer", draws: int = DRAWS, seed: int = 0
) -> np.ndarray:
    """IoUs of ``draws`` simulated pairs (two annotations, or one and the exact box)."""
    rng = np.random.default_rng(seed)
    e1 = sample(family, scale, (draws, 4), rng)
    truth = np.array([[-0.5, -0.5, 1.0, 1.0]])
    if check_mode(kind) == "gold":
        return pair_iou(_boxes(e1), np.repeat(truth, draws, 0))
    e2 = sample(family, scale, (draws, 4), rng)
    return pair_iou(_boxes(e1), _boxes(e2))


@cache
def curve(family: str, kind: str = "peer", draws: int = DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """(scales, mean IoU) on :data:`GRID`; one set of standard draws for every scale."""
    family, kind = check_family(family), check_mode(kind)
    rng = np.random.default_rng(20210611)
    z1 = sample(family, 1.0, (draws, 4), rng)
    z2 = sample(family, 1.0, (draws, 4), rng) if kind == "peer" else None
    truth = np.repeat(np.array([[-0.5, -0.5, 1.0, 1.0]]), draws, 0)
    means = np.empty(len(GRID))
    for i, s in enumerate(GRID):
        other = truth if z2 is None else _boxes(s * z2)
        means[i] = pair_iou(_boxes(s * z1), other).mean()
    return GRID.copy(), np.minimum.accumulate(means)  # a mean IoU cannot grow with the noise


def scale_for_iou(q: float, family: str = "laplace", kind: str = "peer") -> float:
    """The per-annotation scale whose mean IoU is ``q`` (0 for q = 1)."""
    if not (isinstance(q, (int, float)) and 0.0 < q <= 1.0):
        raise InputError(f"--iou-agreement must be in (0, 1], got {q}")
    if q == 1.0:
        return 0.0
    scales, means = curve(check_family(family), check_mode(kind))
    if not (means[-1] <= q <= means[0]):
        raise InputError(
            f"a mean IoU of {q} is outside what {family} noise gives on scales "
            f"{scales[0]:g}-{scales[-1]:g} ({means[-1]:.3f}-{means[0]:.4f})"
        )
    # means decrease with the scale: interpolate log-scale against the reversed curve
    return float(np.exp(np.interp(q, means[::-1], np.log(scales[::-1]))))
