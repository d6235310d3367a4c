"""Per-coordinate noise estimates: the four families side by side, the chosen one, its CI.

The family is chosen by log-likelihood (all four have a location and a scale, so no
penalty is needed); the 95 % interval is a bootstrap of the chosen family's scale
(:func:`huberkl.noise.fit.bootstrap_ci`; with a matching threshold
:func:`huberkl.noise.truncation.bootstrap_truncated_ci`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from huberkl.distributions import FAMILIES
from huberkl.errors import InputError
from huberkl.noise.fit import Fit, best, bootstrap_ci, check_mode, fit_all
from huberkl.noise.truncation import (
    bootstrap_truncated_ci,
    fit_truncated,
    intervals,
    truncated_loglik,
)
from huberkl.params import COORDS

SUBSAMPLE = 50_000  # truncated fits start from a fit on this many errors
FEW = 100  # below this many errors the interval is wide: a warning, not a refusal
# A family that leads the next by less than this log-likelihood (likelihood ratio e² ≈ 7)
# is a near tie: with a heavy matching cut (few tails left) Laplace and Cauchy often are.
TIE = 2.0


@dataclass(frozen=True)
class CoordEstimate:
    """One coordinate: the chosen family, its scale and interval, and every family's fit."""

    family: str
    scale: float
    ci95: tuple[float, float]
    fits: dict[str, Fit]

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "scale": self.scale,
            "loc": self.fits[self.family].loc,
            "ci95": list(self.ci95),
            "fits": {
                f: {"scale": v.scale, "loc": v.loc, "loglik": v.loglik}
                for f, v in self.fits.items()
            },
        }


@dataclass
class Estimate:
    """Estimates for each coordinate from ``n`` errors of one mode (gold or peer)."""

    mode: str
    n: int
    coords: dict[str, CoordEstimate]
    warnings: list[str] = field(default_factory=list)

    def scales(self) -> dict[str, float]:
        return {c: e.scale for c, e in self.coords.items()}


def estimate_coordinate(
    x: np.ndarray,
    mode: str = "gold",
    resamples: int = 200,
    seed: int = 0,
    lo: np.ndarray | None = None,
    hi: np.ndarray | None = None,
) -> CoordEstimate:
    """Fit all four families to ``x``; the best by log-likelihood gets a bootstrap interval.

    With ``lo``/``hi`` (each error's matching interval, huberkl.noise.truncation) the fits
    are the truncated ones: the errors' law given that the pair was matched.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    if len(x) < 2:
        raise InputError(f"need at least 2 errors to fit a scale, got {len(x)}")
    if not np.isfinite(x).all():
        raise InputError("the errors contain NaN or infinite values; remove them first")
    if np.ptp(x) == 0:
        raise InputError(
            f"all {len(x)} errors are equal ({x[0]:g}): no spread to fit a scale to "
            "(are the two files the same annotation?)"
        )
    big = lo is not None and hi is not None and len(x) > SUBSAMPLE
    sub = np.random.default_rng(seed).choice(len(x), SUBSAMPLE, replace=False) if big else None
    plain = fit_all(x if sub is None else x[sub], mode)
    if lo is None or hi is None:
        chosen = best(plain)
        ci = (math.nan, math.nan)
        if resamples:
            ci = bootstrap_ci(x, chosen, mode, plain[chosen].scale, resamples, seed=seed)
        return CoordEstimate(chosen, plain[chosen].scale, ci, plain)
    fits = {}
    for f in FAMILIES:
        start = (plain[f].loc, plain[f].scale)
        fits[f] = (
            fit_truncated(x, lo, hi, f, mode, start)
            if sub is None
            else fit_truncated(x[sub], lo[sub], hi[sub], f, mode, start)
        )
    if sub is not None:
        # Families compared by the full sample's log-likelihood at each one's subsample
        # optimum; only the chosen one is refitted on every error.
        fits = {f: truncated_loglik(x, lo, hi, fits[f], mode) for f in FAMILIES}
        chosen = best(fits)
        fits[chosen] = fit_truncated(
            x, lo, hi, chosen, mode, (fits[chosen].loc, fits[chosen].scale)
        )
    chosen = best(fits)
    ci = (math.nan, math.nan)
    if resamples:
        ci = bootstrap_truncated_ci(
            x, lo, hi, chosen, mode, fits[chosen], resamples=resamples, seed=seed
        )
    return CoordEstimate(chosen, fits[chosen].scale, ci, fits)


def estimate(
    errors: np.ndarray,
    mode: str = "gold",
    coords: Sequence[str] = COORDS,
    resamples: int = 200,
    seed: int = 0,
    min_iou: float | None = None,
) -> Estimate:
    """Estimate each column of ``errors`` (one column per name in ``coords``).

    ``min_iou``: the errors are matched box pairs (columns x, y, w, h) kept only at IoU >=
    ``min_iou``; the fits then account for the tails that this cuts off.
    """
    check_mode(mode)
    errors = np.asarray(errors, dtype=np.float64).reshape(len(errors), -1)
    if errors.shape[1] != len(coords):
        raise InputError(f"errors have {errors.shape[1]} columns, expected {len(coords)}")
    lo = hi = None
    if min_iou is not None:
        if tuple(coords) != COORDS:
            raise InputError("a matching threshold needs the four box coordinates x, y, w, h")
        lo, hi = intervals(errors, min_iou)
    out = {
        c: estimate_coordinate(
            errors[:, i],
            mode,
            resamples,
            seed + i,
            None if lo is None else lo[:, i],
            None if hi is None else hi[:, i],
        )
        for i, c in enumerate(coords)
    }
    est = Estimate(mode, len(errors), out)
    for c, e in out.items():
        runner_up = max((f for f in e.fits if f != e.family), key=lambda f: e.fits[f].loglik)
        margin = e.fits[e.family].loglik - e.fits[runner_up].loglik
        if margin < TIE:
            est.warnings.append(
                f"{c}: {e.family} leads {runner_up} by only {margin:.1f} in log-likelihood "
                f"(< {TIE:g}): the family is a near tie, and with it the efficient α"
            )
    if len(errors) < FEW:
        est.warnings.append(
            f"only {len(errors)} matched errors (< {FEW}): the family choice is unreliable "
            "and the 95% intervals are wide"
        )
    return est
