"""Maximum-likelihood fits of the four noise families and of their difference laws.

Gold mode fits the label errors themselves; peer mode fits the difference of two
independent errors of the same law (docs/NOISE.md, "Difference of two independent errors"),
parametrised by the per-annotation scale, so both modes report the same quantity: the
scale of one annotation's noise, scipy.stats' ``scale`` of ``laplace``, ``norm``,
``logistic``, ``cauchy``.

Every fit is a location-scale MLE on a 2-D array (rows = samples, e.g. bootstrap
resamples), vectorised over rows: closed forms for Laplace (median, mean absolute
deviation) and Gaussian (mean, standard deviation), Fisher scoring for the others (the
expected information of a symmetric location-scale law is diagonal and computed once by
quadrature, so every step is an ascent direction and needs no line search).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from scipy import integrate, special

from huberkl.errors import InputError

FAMILIES = ("laplace", "gaussian", "logistic", "cauchy")
SCIPY_NAME = {"laplace": "laplace", "gaussian": "norm", "logistic": "logistic", "cauchy": "cauchy"}
MODES = ("gold", "peer")
_LOG2PI = math.log(2.0 * math.pi)


def check_family(name: str) -> str:
    key = str(name).lower()
    if key not in FAMILIES:
        raise InputError(f"unknown noise family {name!r}; allowed: {', '.join(FAMILIES)}")
    return key


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise InputError(f"reference kind must be one of {'|'.join(MODES)}, got {mode!r}")
    return mode


# --------------------------------------------------------------------------- standard laws
# g(z) = log f(z) of the unit-scale law and g'(z); for peer mode the law of the difference
# of two unit-scale errors (its own scale is then the per-annotation scale).


def _below_one(a: np.ndarray, direct: np.ndarray, shift: int) -> np.ndarray:
    """``direct`` with its entries at a < 1 replaced by Σ_{n≥3} (−1)^{n+1}(n−2)a^{n−shift}/(n−shift)!
    (30 terms): the closed forms cancel catastrophically near 0."""
    small = a < 1.0
    if not np.any(small):
        return direct
    s = a[small]
    acc = np.zeros_like(s)
    pw = np.ones_like(s)
    fact = 1.0
    for n in range(1 + shift, 31 + shift):
        pw = pw * s
        fact *= n - shift
        if n >= 3:
            acc = acc + ((-1.0) ** (n + 1)) * (n - 2) * pw / fact
    out = direct.copy()
    out[small] = acc
    return out


def _logistic_diff_n(a: np.ndarray) -> np.ndarray:
    """N(a) = (a − 2) + (a + 2)e^{−a}, with its series Σ_{n≥3} (−1)^{n+1}(n−2)aⁿ/n! below 1."""
    return _below_one(a, (a - 2.0) + (a + 2.0) * np.exp(-a), shift=0)


def _logistic_diff_dn(a: np.ndarray) -> np.ndarray:
    """N'(a) = 1 − (a + 1)e^{−a}, by its series Σ_{n≥3} (−1)^{n+1}(n−2)a^{n−1}/(n−1)! below 1."""
    return _below_one(a, 1.0 - (a + 1.0) * np.exp(-a), shift=1)


def _g_logistic_diff(z: np.ndarray) -> np.ndarray:
    a = np.abs(z)
    out = np.full(a.shape, math.log(1.0 / 6.0))
    nz = a > 1e-6
    an = a[nz]
    out[nz] = -an + np.log(_logistic_diff_n(an)) - 3.0 * np.log(-np.expm1(-an))
    return out


def _dg_logistic_diff(z: np.ndarray) -> np.ndarray:
    a = np.abs(z)
    out = np.zeros(a.shape)
    nz = a > 1e-6
    an = a[nz]
    d = -1.0 + _logistic_diff_dn(an) / _logistic_diff_n(an) - 3.0 * np.exp(-an) / -np.expm1(-an)
    out[nz] = d
    return np.sign(z) * out


_LOG_PDF: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("gold", "laplace"): lambda z: -np.abs(z) - math.log(2.0),
    ("gold", "gaussian"): lambda z: -0.5 * z * z - 0.5 * _LOG2PI,
    ("gold", "logistic"): lambda z: -np.abs(z) - 2.0 * np.log1p(np.exp(-np.abs(z))),
    ("gold", "cauchy"): lambda z: -math.log(math.pi) - np.log1p(z * z),
    ("peer", "laplace"): lambda z: np.log1p(np.abs(z)) - np.abs(z) - math.log(4.0),
    ("peer", "gaussian"): lambda z: -0.25 * z * z - 0.5 * math.log(4.0 * math.pi),
    ("peer", "logistic"): _g_logistic_diff,
    ("peer", "cauchy"): lambda z: math.log(2.0 / math.pi) - np.log(4.0 + z * z),
}
_DLOG_PDF: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("gold", "logistic"): lambda z: -np.tanh(0.5 * z),
    ("gold", "cauchy"): lambda z: -2.0 * z / (1.0 + z * z),
    ("peer", "laplace"): lambda z: -z / (1.0 + np.abs(z)),
    ("peer", "logistic"): _dg_logistic_diff,
    ("peer", "cauchy"): lambda z: -2.0 * z / (4.0 + z * z),
}


def logpdf(x: np.ndarray, family: str, loc: float, scale: float, mode: str = "gold") -> np.ndarray:
    """Log density of the error (gold) or of the difference of two errors (peer)."""
    z = (np.asarray(x, dtype=np.float64) - loc) / scale
    return _LOG_PDF[(check_mode(mode), check_family(family))](z) - math.log(scale)


@cache
def _fisher(mode: str, family: str) -> tuple[float, float]:
    """Per-observation expected information of (loc, scale) at unit scale: E[g'²], E[(zg'+1)²]."""
    g, dg = _LOG_PDF[(mode, family)], _DLOG_PDF[(mode, family)]

    def expect(h: Callable[[float], float]) -> float:
        def integrand(z: float) -> float:
            zz = np.array([z])
            return float(h(zz) * np.exp(g(zz))[0])

        val, _ = integrate.quad(integrand, 0.0, np.inf, limit=400, epsabs=1e-13, epsrel=1e-11)
        return 2.0 * val

    i_loc = expect(lambda z: dg(z)[0] ** 2)
    i_scale = expect(lambda z: (z[0] * dg(z)[0] + 1.0) ** 2)
    return i_loc, i_scale


# --------------------------------------------------------------------------- fitting


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
    dg = _DLOG_PDF[(mode, family)]
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
    ll = float(np.sum(logpdf(x, family, float(loc[0]), float(scale[0]), mode)))
    return Fit(family, float(loc[0]), float(scale[0]), ll, len(x))


def fit_all(x: np.ndarray, mode: str = "gold") -> dict[str, Fit]:
    """All four families, in :data:`FAMILIES` order."""
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


def sample(family: str, scale: float, size: int | tuple[int, ...], rng: np.random.Generator):
    """Draws of ``family`` with ``scale`` (numpy's generators; Cauchy as scale·standard_cauchy)."""
    family = check_family(family)
    if family == "laplace":
        return rng.laplace(0.0, scale, size)
    if family == "gaussian":
        return rng.normal(0.0, scale, size)
    if family == "logistic":
        return rng.logistic(0.0, scale, size)
    return scale * rng.standard_cauchy(size)


def logistic_diff_pdf0() -> float:
    """f(0) of the unit logistic difference law (docs/NOISE.md: 1/6), for tests."""
    return float(np.exp(_g_logistic_diff(np.array([0.0])))[0])


# --------------------------------------------------------------------------- truncated fits
# Matching keeps a pair only if its IoU reaches the threshold, which cuts off the tails of
# the errors. Given the other three coordinates of a pair, the values of one coordinate that
# keep it matched form an interval [lo, hi] (huberkl.noise.truncation); its error's law
# conditional on being matched is the family's density renormalised to that interval, a
# likelihood for each coordinate on its own (docs/NOISE.md, "Matching truncates").


def _sf_logistic_diff(a: np.ndarray) -> np.ndarray:
    """Upper tail of the unit logistic difference law at a >= 0: u(a − 1 + u)/(1 − u)², u = e^{−a}."""
    u = np.exp(-a)
    core = a + np.expm1(-a)  # a − 1 + e^{−a}
    small = a < 0.1
    s = a[small]
    core[small] = s**2 / 2 - s**3 / 6 + s**4 / 24 - s**5 / 120 + s**6 / 720 - s**7 / 5040
    with np.errstate(invalid="ignore", divide="ignore"):
        out = u * core / np.expm1(-a) ** 2
    return np.where(a == 0, 0.5, np.where(np.isinf(a), 0.0, out))


_SF: dict[tuple[str, str], Callable[[np.ndarray], np.ndarray]] = {
    ("gold", "laplace"): lambda a: 0.5 * np.exp(-a),
    ("gold", "gaussian"): lambda a: special.ndtr(-a),
    ("gold", "logistic"): lambda a: special.expit(-a),
    ("gold", "cauchy"): lambda a: np.arctan2(1.0, a) / math.pi,
    ("peer", "laplace"): lambda a: 0.25 * (2.0 + np.minimum(a, 1e300)) * np.exp(-a),
    ("peer", "gaussian"): lambda a: special.ndtr(-a / math.sqrt(2.0)),
    ("peer", "logistic"): _sf_logistic_diff,
    ("peer", "cauchy"): lambda a: np.arctan2(2.0, a) / math.pi,
}
_DLOG_PDF[("gold", "laplace")] = lambda z: -np.sign(z)
_DLOG_PDF[("gold", "gaussian")] = lambda z: -z
_DLOG_PDF[("peer", "gaussian")] = lambda z: -0.5 * z


def mass(za: np.ndarray, zb: np.ndarray, family: str, mode: str = "gold") -> np.ndarray:
    """P(za <= Z <= zb) for the unit law, from upper tails only (accurate in both tails)."""
    sf = _SF[(check_mode(mode), check_family(family))]
    za, zb = np.broadcast_arrays(np.asarray(za, float), np.asarray(zb, float))
    out = np.empty(za.shape)
    right = za >= 0
    left = zb <= 0
    mid = ~right & ~left
    out[right] = sf(za[right]) - sf(np.abs(zb[right]))
    out[left] = sf(-zb[left]) - sf(np.abs(za[left]))
    out[mid] = 1.0 - sf(-za[mid]) - sf(zb[mid])
    return out


def cdf(z: np.ndarray, family: str, mode: str = "gold") -> np.ndarray:
    """CDF of the unit law (used by tests and the figure)."""
    z = np.asarray(z, dtype=np.float64)
    return mass(np.full(z.shape, -np.inf), z, family, mode)


def _trunc_terms(
    theta: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, family: str, mode: str
) -> tuple[float, np.ndarray]:
    """−mean conditional log-likelihood and its gradient in (loc, log scale)."""
    loc, s = theta[0], math.exp(theta[1])
    g, dg = _LOG_PDF[(mode, family)], _DLOG_PDF[(mode, family)]
    z, za, zb = (x - loc) / s, (lo - loc) / s, (hi - loc) / s
    m = np.maximum(mass(za, zb, family, mode), 1e-300)
    pa, pb = np.exp(g(za)), np.exp(g(zb))
    with np.errstate(invalid="ignore"):
        pza = np.where(np.isfinite(za), pa * za, 0.0)
        pzb = np.where(np.isfinite(zb), pb * zb, 0.0)
    d = dg(z)
    value = -np.mean(g(z) - theta[1] - np.log(m))
    grad_loc = -np.mean(-d / s + (pb - pa) / (s * m))
    grad_log_s = -np.mean(-d * z - 1.0 + (pzb - pza) / m)
    return float(value), np.array([grad_loc, grad_log_s])


def fit_truncated(
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    family: str,
    mode: str = "gold",
    start: tuple[float, float] | None = None,
) -> Fit:
    """MLE of ``family`` for errors ``x`` each known to lie in its own ``[lo, hi]``.

    The log-likelihood is the conditional one, Σ log f(x) − log P(lo <= X <= hi); with
    infinite bounds it is the plain MLE of :func:`fit`.
    """
    from scipy.optimize import minimize

    family, mode = check_family(family), check_mode(mode)
    x, lo, hi = (np.asarray(v, dtype=np.float64).ravel() for v in (x, lo, hi))
    if start is None:
        loc0, s0 = fit_rows(x[None, :], family, mode)
        start = (float(loc0[0]), float(s0[0]))
    scale_unit = start[1]
    # Work in units of the starting scale so that both parameters are O(1).
    xs, los, his = x / scale_unit, lo / scale_unit, hi / scale_unit
    theta0 = np.array([start[0] / scale_unit, 0.0])
    res = minimize(
        _trunc_terms,
        theta0,
        args=(xs, los, his, family, mode),
        jac=True,
        method="L-BFGS-B",
        bounds=[(None, None), (-30.0, 30.0)],
        options={"maxiter": 500, "gtol": 1e-10, "ftol": 1e-14},
    )
    loc, scale = float(res.x[0]) * scale_unit, math.exp(float(res.x[1])) * scale_unit
    return truncated_loglik(x, lo, hi, Fit(family, loc, scale, math.nan, len(x)), mode)


def truncated_loglik(
    x: np.ndarray, lo: np.ndarray, hi: np.ndarray, fit: Fit, mode: str = "gold"
) -> Fit:
    """``fit`` with its conditional log-likelihood on ``x`` (bounds ``lo``, ``hi``)."""
    z = (x - fit.loc) / fit.scale
    za, zb = (lo - fit.loc) / fit.scale, (hi - fit.loc) / fit.scale
    ll = float(
        np.sum(_LOG_PDF[(mode, fit.family)](z) - math.log(fit.scale))
        - np.sum(np.log(np.maximum(mass(za, zb, fit.family, mode), 1e-300)))
    )
    return Fit(fit.family, fit.loc, fit.scale, ll, len(x))


def _trunc_rows(
    theta: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, family: str, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """−mean conditional log-likelihood and its gradient per row: theta (B, 2), x/lo/hi (B, m)."""
    loc, s = theta[:, :1], np.exp(theta[:, 1:])
    g, dg = _LOG_PDF[(mode, family)], _DLOG_PDF[(mode, family)]
    z, za, zb = (x - loc) / s, (lo - loc) / s, (hi - loc) / s
    m = np.maximum(mass(za.ravel(), zb.ravel(), family, mode).reshape(x.shape), 1e-300)
    pa, pb = np.exp(g(za)), np.exp(g(zb))
    with np.errstate(invalid="ignore"):
        pza = np.where(np.isfinite(za), pa * za, 0.0)
        pzb = np.where(np.isfinite(zb), pb * zb, 0.0)
    d = dg(z)
    value = -np.mean(g(z) - np.log(m), axis=1) + theta[:, 1]
    grad_loc = -np.mean(-d / s + (pb - pa) / (s * m), axis=1)
    grad_log_s = -np.mean(-d * z - 1.0 + (pzb - pza) / m, axis=1)
    return value, np.stack([grad_loc, grad_log_s], axis=1)


HALVINGS = 10  # step halvings before a resample counts as converged (1/1024 of a step)


def _newton_matrix(
    theta: np.ndarray,
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    family: str,
    mode: str,
    h: float,
) -> np.ndarray:
    """Inverse of the full sample's Hessian at ``theta``, by central differences of the
    analytic gradient with step ``h``, its eigenvalues floored so that it is positive
    definite.

    ``h`` is the distance the resample optima move (~1/√m in units of the scale), not a
    rounding-sized step: the gold Laplace likelihood has a kink at every error, so its
    gradient in the location is piecewise constant and a tiny step sees no or one kink
    (a location entry of ~0 or ~1/(n·h) instead of ~1 in units of the scale, and Newton
    steps that run off); over ±h it counts ~n·h errors. The floor keeps a flat direction
    from giving unbounded steps; the caller's line search does the rest.
    """
    hess = np.empty((2, 2))
    for j in range(2):
        e = np.zeros((1, 2))
        e[0, j] = h
        gp = _trunc_rows(theta[None, :] + e, x[None, :], lo[None, :], hi[None, :], family, mode)[1]
        gm = _trunc_rows(theta[None, :] - e, x[None, :], lo[None, :], hi[None, :], family, mode)[1]
        hess[:, j] = (gp[0] - gm[0]) / (2 * h)
    vals, vecs = np.linalg.eigh(0.5 * (hess + hess.T))
    vals = np.maximum(vals, max(1e-3 * float(np.max(np.abs(vals))), 1e-12))
    return (vecs / vals) @ vecs.T


def truncated_resample_fits(
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    family: str,
    mode: str,
    estimate: Fit,
    idx: np.ndarray,
    steps: int = 60,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The truncated MLE of every resample ``x[idx[r]]`` at once: ``(loc, scale, nll)`` per
    row, ``nll`` the mean negative conditional log-likelihood at the returned fit.

    Newton steps with one matrix, the full sample's Hessian at ``estimate``
    (:func:`_newton_matrix`): resample optima lie within O(1/√m) of the estimate, where
    that Hessian is accurate. Each step is safeguarded per resample: at most 0.5 in each
    parameter (scale units, log scale) and halved until the resample's negative
    log-likelihood does not increase, so no resample walks away from its optimum; a
    resample whose step cannot be made to descend in :data:`HALVINGS` halvings, or whose
    step falls below 1e-9, has converged and stops.
    """
    x, lo, hi = (np.asarray(v, dtype=np.float64).ravel() for v in (x, lo, hi))
    idx = np.asarray(idx)
    unit = estimate.scale  # work in units of the estimate's scale
    xs, los, his = x / unit, lo / unit, hi / unit
    theta0 = np.array([estimate.loc / unit, 0.0])
    inv = _newton_matrix(theta0, xs, los, his, family, mode, 1.0 / math.sqrt(idx.shape[1]))
    xb, lb, hb = xs[idx], los[idx], his[idx]
    theta = np.repeat(theta0[None, :], len(idx), axis=0)
    value, grad = _trunc_rows(theta, xb, lb, hb, family, mode)
    live = np.arange(len(idx))  # resamples still moving
    for _ in range(steps):
        step = np.clip(grad[live] @ inv.T, -0.5, 0.5)
        moved = np.zeros(len(live), dtype=bool)
        todo = np.arange(len(live))  # positions in ``live`` still searching along their step
        for _ in range(HALVINGS):
            r = live[todo]
            cand = theta[r] - step[todo]
            v, gr = _trunc_rows(cand, xb[r], lb[r], hb[r], family, mode)
            ok = v <= value[r]
            acc = r[ok]
            theta[acc], value[acc], grad[acc] = cand[ok], v[ok], gr[ok]
            moved[todo[ok]] = True
            todo = todo[~ok]
            if len(todo) == 0:
                break
            step[todo] *= 0.5
        small = np.max(np.abs(step), axis=1) < 1e-9
        live = live[moved & ~small]
        if len(live) == 0:
            break
    return theta[:, 0] * unit, np.exp(theta[:, 1]) * unit, value + math.log(unit)


def bootstrap_truncated_ci(
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    family: str,
    mode: str,
    estimate: Fit,
    resamples: int = 200,
    max_size: int = 2_000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """As :func:`bootstrap_ci`, for the truncated fit, all resamples fitted at once
    (:func:`truncated_resample_fits`)."""
    x, lo, hi = (np.asarray(v, dtype=np.float64).ravel() for v in (x, lo, hi))
    n = len(x)
    m = min(n, max_size)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(resamples, m))
    _, scales, _ = truncated_resample_fits(x, lo, hi, family, mode, estimate, idx)
    lo_q, hi_q = np.quantile(scales, [(1 - level) / 2, (1 + level) / 2])
    shrink = math.sqrt(m / n)
    e_s = estimate.scale
    return float(e_s + shrink * (lo_q - e_s)), float(e_s + shrink * (hi_q - e_s))
