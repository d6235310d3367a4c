"""Which errors survive matching: the IoU of an error vector and each coordinate's interval.

An error (x, y, w, h) coded against its reference box (docs/NOISE.md) describes the box
with centre (x, y) and size (e^w, e^h) in units of the reference box, which is the unit box
at the origin; IoU is invariant to scaling each axis, so the pair's IoU is a function of
the error alone (:func:`iou_of_errors`). With the other three coordinates fixed, the IoU is
quasi-concave in each coordinate (the intersection is a concave piecewise-linear function
of x_c or w, the union affine), so the values that keep IoU >= q form an interval that
contains the observed value; :func:`intervals` finds its ends by vectorised bisection.
"""

from __future__ import annotations

import numpy as np

from huberkl.errors import InputError

_SPAN = 40.0  # log-size bracket: a box e^40 times the reference has IoU ~ 0
_STEPS = 50  # bisection steps: bracket/2^50 ~ 1e-13


def iou_of_errors(e: np.ndarray) -> np.ndarray:
    """IoU between the unit reference box and the box that the error rows ``e`` (n, 4) code."""
    e = np.asarray(e, dtype=np.float64)
    cx, cy = e[..., 0], e[..., 1]
    w, h = np.exp(np.clip(e[..., 2], -_SPAN, _SPAN)), np.exp(np.clip(e[..., 3], -_SPAN, _SPAN))
    ix = np.clip(np.minimum(cx + w / 2, 0.5) - np.maximum(cx - w / 2, -0.5), 0, None)
    iy = np.clip(np.minimum(cy + h / 2, 0.5) - np.maximum(cy - h / 2, -0.5), 0, None)
    inter = ix * iy
    return inter / (1.0 + w * h - inter)


def _overlap(c: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Length of [c − size/2, c + size/2] ∩ [−1/2, 1/2]."""
    return np.clip(np.minimum(np.minimum(size, 1.0), (size + 1.0) / 2.0 - np.abs(c)), 0, None)


def intervals(e: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """Per row and coordinate, ``[lo, hi]``: the values of that coordinate, the other three
    held at the row's, for which the IoU stays >= ``min_iou``. Shapes (n, 4).

    IoU >= q is ``inter·(1 + q) >= q·(1 + w·h)`` (union = 1 + w·h − inter). For a centre
    the overlap along its axis is ``min(size, 1, (size + 1)/2 − |c|)``, so the interval is
    ``|c| <= (size + 1)/2 − T`` with T the overlap needed. For a size W the overlap is
    ``min(W, 1, (W + 1)/2 − |c|)``: three linear conditions on W, each a bound.
    """
    if not (0.0 < min_iou <= 1.0):
        raise InputError(f"min_iou must be in (0, 1], got {min_iou}")
    q = float(min_iou)
    e = np.asarray(e, dtype=np.float64).reshape(-1, 4)
    size = np.exp(np.clip(e[:, 2:], -_SPAN, _SPAN))
    over = np.stack([_overlap(e[:, 0], size[:, 0]), _overlap(e[:, 1], size[:, 1])], axis=1)
    area = size[:, 0] * size[:, 1]
    lo, hi = np.empty_like(e), np.empty_like(e)
    with np.errstate(divide="ignore", invalid="ignore"):
        for c in range(2):
            other = over[:, 1 - c]
            need = q * (1.0 + area) / ((1.0 + q) * other)
            t = (size[:, c] + 1.0) / 2.0 - need
            lo[:, c], hi[:, c] = -t, t
        for c in range(2):  # size W of axis c; the other axis's overlap is fixed
            k = (1.0 + q) * over[:, 1 - c]
            g = q * size[:, 1 - c]  # q·(other size): the union's slope in W
            a = np.abs(e[:, c])
            w_lo = np.where(k > g, q / (k - g), np.inf)
            w_hi = np.where(g > 0, (k - q) / g, np.inf)
            half = k / 2.0 - g
            rhs = q - k * (0.5 - a)
            w_lo = np.where(half > 0, np.maximum(w_lo, rhs / half), w_lo)
            w_hi = np.where(half < 0, np.minimum(w_hi, rhs / half), w_hi)
            w_hi = np.where((half == 0) & (rhs > 0), -np.inf, w_hi)
            lo[:, c + 2] = np.log(np.maximum(w_lo, 0.0))
            hi[:, c + 2] = np.log(np.maximum(w_hi, 0.0))
    return lo, hi
