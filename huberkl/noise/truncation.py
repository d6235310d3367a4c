"""Matching truncates the errors; the truncated fits undo it (docs/NOISE.md, "Matching truncates").

Which errors survive matching: an error (x, y, w, h) coded against its reference box
(docs/NOISE.md) describes the box with centre (x, y) and size (e^w, e^h) in units of the
reference box, which is the unit box at the origin; IoU is invariant to scaling each axis,
so the pair's IoU is a function of the error alone (:func:`iou_of_errors`). With the other
three coordinates fixed, the IoU is quasi-concave in each coordinate (the intersection is a
concave piecewise-linear function of x_c or w, the union affine), so the values that keep
IoU >= q form an interval that contains the observed value; :func:`intervals` finds its ends.

The fits: an error's law conditional on its pair being matched is the family's density
renormalised to its interval [lo, hi], a likelihood for each coordinate on its own,
Σ log f(x) − log P(lo <= X <= hi) (:func:`_nll`, the one place it is written, for one
sample or many at once). :func:`fit_truncated` maximises it; the bootstrap interval
(:func:`bootstrap_truncated_ci`) fits every resample at once (:func:`truncated_resample_fits`).
"""

from __future__ import annotations

import math

import numpy as np

from huberkl.distributions import Law, check_family
from huberkl.errors import InputError
from huberkl.noise.fit import Fit, check_mode, fit_rows, law

_SPAN = 40.0  # log sizes clipped to ±40: a box e^40 times the reference has IoU ~ 0


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


# --------------------------------------------------------------------------- truncated fits

_exp = np.vectorize(math.exp, otypes=[np.float64])


def _nll(
    theta: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, dist: Law
) -> tuple[np.ndarray, np.ndarray]:
    """−mean conditional log-likelihood of ``x`` given ``lo <= x <= hi``, and its gradient
    in (loc, log scale), for the unit law ``dist`` at ``theta = (loc, log scale)``.

    One sample: theta (2,), x/lo/hi (m,) give a 0-d value and a (2,) gradient; many: theta
    (B, 2), x/lo/hi (B, m) give (B,) values and (B, 2) gradients, row by row. The scale is
    ``math.exp`` of its log (libm's exp, not numpy's vectorised one, which can differ in
    the last bit): L-BFGS-B in :func:`fit_truncated` amplifies a last-bit change of the
    objective into a change of the fit at its tolerance.
    """
    loc, log_s = theta[..., :1], theta[..., 1:]
    s = _exp(log_s)
    z, za, zb = (x - loc) / s, (lo - loc) / s, (hi - loc) / s
    m = np.maximum(dist.mass(za, zb), 1e-300)
    pa, pb = np.exp(dist.logpdf(za)), np.exp(dist.logpdf(zb))
    with np.errstate(invalid="ignore"):
        pza = np.where(np.isfinite(za), pa * za, 0.0)
        pzb = np.where(np.isfinite(zb), pb * zb, 0.0)
    d = dist.dlogpdf(z)
    value = -np.mean(dist.logpdf(z) - log_s - np.log(m), axis=-1)
    grad_loc = -np.mean(-d / s + (pb - pa) / (s * m), axis=-1)
    grad_log_s = -np.mean(-d * z - 1.0 + (pzb - pza) / m, axis=-1)
    return value, np.stack([grad_loc, grad_log_s], axis=-1)


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
    infinite bounds it is the plain MLE of :func:`huberkl.noise.fit.fit`.
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
        _nll,
        theta0,
        args=(xs, los, his, law(family, mode)),
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
    x, lo, hi = (np.asarray(v, dtype=np.float64).ravel() for v in (x, lo, hi))
    theta = np.array([fit.loc, math.log(fit.scale)])
    value, _ = _nll(theta, x, lo, hi, law(fit.family, mode))
    return Fit(fit.family, fit.loc, fit.scale, -len(x) * float(value), len(x))


HALVINGS = 10  # step halvings before a resample counts as converged (1/1024 of a step)


def _newton_matrix(
    theta: np.ndarray,
    x: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    dist: Law,
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
        gp = _nll(theta[None, :] + e, x[None, :], lo[None, :], hi[None, :], dist)[1]
        gm = _nll(theta[None, :] - e, x[None, :], lo[None, :], hi[None, :], dist)[1]
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
    dist = law(family, mode)
    inv = _newton_matrix(theta0, xs, los, his, dist, 1.0 / math.sqrt(idx.shape[1]))
    xb, lb, hb = xs[idx], los[idx], his[idx]
    theta = np.repeat(theta0[None, :], len(idx), axis=0)
    value, grad = _nll(theta, xb, lb, hb, dist)
    live = np.arange(len(idx))  # resamples still moving
    for _ in range(steps):
        step = np.clip(grad[live] @ inv.T, -0.5, 0.5)
        moved = np.zeros(len(live), dtype=bool)
        todo = np.arange(len(live))  # positions in ``live`` still searching along their step
        for _ in range(HALVINGS):
            r = live[todo]
            cand = theta[r] - step[todo]
            v, gr = _nll(cand, xb[r], lb[r], hb[r], dist)
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
    """As :func:`huberkl.noise.fit.bootstrap_ci`, for the truncated fit, all resamples fitted at once
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
