"""Maximum-likelihood fits of the noise laws (:mod:`huberkl.distributions`) and their bootstrap.

Gold mode fits the label errors themselves; peer mode fits the difference of two
independent errors of the same law (docs/NOISE.md, "Difference of two independent errors"),
parametrised by the per-annotation scale, so both modes report the same quantity: the
scale of one annotation's noise, scipy.stats' ``scale`` of ``laplace``, ``norm``,
``logistic``, ``cauchy``.

Every fit is a location-scale MLE on a 2-D array (rows = samples, e.g. bootstrap
resamples), vectorised over rows: closed forms for Laplace (median, mean absolute
deviation) and Gaussian (mean, standard deviation), Fisher scoring for the others (the
expected information of a symmetric location-scale law is diagonal and computed once by
quadrature, so every step is an ascent direction and needs no line search). The fits of
errors that matching truncated are in :mod:`huberkl.noise.truncation`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import integrate

from huberkl import distributions
from huberkl.distributions import FAMILIES, Law, check_family
from huberkl.errors import InputError

MODES = ("gold", "peer")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"reference kind must be one of {'|'.join(MODES)}, got {mode!r}")
    return mode


def law(family: str, mode: str = "gold") -> Law:
    """The unit law that ``mode`` fits: the error (gold) or the difference of two (peer)."""
    family = check_family(family)
    return distributions.law(family, difference=check_mode(mode) == "peer")


@cache
def _fisher(mode: str, family: str) -> tuple[float, float]:
    """Per-observation expected information of (loc, scale) at unit scale: E[g'²], E[(zg'+1)²]."""
    unit = law(family, mode)
    g, dg = unit.logpdf, unit.dlogpdf

    def expect(h: Callable[[float], float]) -> float:
        def integrand(z: float) -> float:
            zz = np.array([z])
            return float(h(zz) * np.exp(g(zz))[0])

        val, _ = integrate.quad(integrand, 0.0, np.inf, limit=400, epsabs=1e-13, epsrel=1e-11)
        return 2.0 * val

    i_loc = expect(lambda z: dg(z)[0] ** 2)
    i_scale = expect(lambda z: (z[0] * dg(z)[0] + 1.0) ** 2)
    return i_loc, i_scale


@dataclass(frozen=True)
class Fit:
    """One family's MLE on one sample: location, per-annotation scale, total log-likelihood."""

    family: str
    loc: float
    scale: float
    loglik: float
    n: int

    def to_dict(self) -> dict[str, float | int | str]:
        return {"family": self.family, "loc": self.loc, "scale": self.scale, "loglik": self.loglik}


def _iqr_scale(x: np.ndarray) -> np.ndarray:
    q1, q3 = np.quantile(x, [0.25, 0.75], axis=1)
    return np.maximum(q3 - q1, 1e-300)


def fit_rows(
    x: np.ndarray, family: str, mode: str = "gold", iters: int = 200, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray]:
    """MLE ``(loc, scale)`` per row of ``x`` (2-D); ``scale`` is the per-annotation scale."""
    family, mode = check_family(family), check_mode(mode)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError("fit_rows needs a 2-D array (rows are samples)")
    if family == "gaussian":
        loc = x.mean(axis=1)
        sd = np.sqrt(np.mean((x - loc[:, None]) ** 2, axis=1))
        return loc, sd / (math.sqrt(2.0) if mode == "peer" else 1.0)
    if family == "laplace" and mode == "gold":
        loc = np.median(x, axis=1)
        return loc, np.mean(np.abs(x - loc[:, None]), axis=1)
    dg = law(family, mode).dlogpdf
    i_loc, i_scale = _fisher(mode, family)
    loc = np.median(x, axis=1)
    # start: the IQR of the law at unit scale matched to the sample's
    unit_iqr = {"laplace": 2 * math.log(2), "logistic": 2 * math.log(3), "cauchy": 2.0}[family]
    if mode == "peer":
        unit_iqr *= {"laplace": 1.55, "logistic": 1.55, "cauchy": 2.0}[family]
    scale = _iqr_scale(x) / unit_iqr
    for _ in range(iters):
        z = (x - loc[:, None]) / scale[:, None]
        d = dg(z)
        step_loc = -np.mean(d, axis=1) / i_loc  # in units of the scale
        step_log_scale = -np.mean(z * d + 1.0, axis=1) / i_scale
        loc = loc + scale * step_loc
        scale = scale * np.exp(np.clip(step_log_scale, -1.0, 1.0))
        if max(np.max(np.abs(step_loc)), np.max(np.abs(step_log_scale))) < tol:
            break
    return loc, scale


def fit(x: np.ndarray, family: str, mode: str = "gold") -> Fit:
    """The MLE of ``family`` (its difference law in peer mode) on the 1-D sample ``x``."""
    x = np.asarray(x, dtype=np.float64).ravel()
    loc, scale = fit_rows(x[None, :], family, mode)
    ll = float(np.sum(law(family, mode).logpdf_at(x, float(loc[0]), float(scale[0]))))
    return Fit(family, float(loc[0]), float(scale[0]), ll, len(x))


def fit_all(x: np.ndarray, mode: str = "gold") -> dict[str, Fit]:
    """All four families, in :data:`~huberkl.distributions.FAMILIES` order."""
    return {f: fit(x, f, mode) for f in FAMILIES}


def best(fits: dict[str, Fit]) -> str:
    """The family with the largest log-likelihood (every family has two parameters)."""
    return max(fits, key=lambda f: fits[f].loglik)


def bootstrap_ci(
    x: np.ndarray,
    family: str,
    mode: str = "gold",
    estimate: float | None = None,
    resamples: int = 200,
    max_size: int = 10_000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the scale, all resamples fitted at once.

    Above ``max_size`` observations it is an m-out-of-n bootstrap: resamples of size m,
    deviations from the full-sample estimate shrunk by √(m/n) (the scale's MLE is
    √n-consistent), which keeps the cost flat for COCO-sized inputs.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    n = len(x)
    if n < 2:
        raise InputError(f"a bootstrap needs at least 2 errors, got {n}")
    if estimate is None:
        estimate = float(fit_rows(x[None, :], family, mode)[1][0])
    m = min(n, max_size)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, m))
    _, scales = fit_rows(x[idx], family, mode)
    lo_q, hi_q = np.quantile(scales, [(1 - level) / 2, (1 + level) / 2])
    shrink = math.sqrt(m / n)
    return float(estimate + shrink * (lo_q - estimate)), float(
        estimate + shrink * (hi_q - estimate)
    )
