"""The α that the asymptotics prefer, per noise family (what the paper's Figure 2 lacks).

For a regression M-estimator with ψ_α(ε) = clamp(ε, −α, α) and symmetric noise ε
independent of x, √N(θ̂ − θ) is asymptotically normal with covariance
``V(α)·E[aaᵀ]⁻¹``, where (Huber 1964)

    V(α) = E[ψ_α(ε)²] / P(|ε| <= α)².

The toy's test MSE is a fixed quadratic form in θ̂ − θ, so its expectation is
proportional to V(α) and the best α minimises V. Both integrals are done by
``scipy.integrate.quad`` against the family's density (``huberkl.distributions``, its
plain-float forms; tested against ``scipy.stats``). Because V(α; s) = s²·V(α/s; 1)
(the fit is equivariant), the optimal α is linear in the scale s.

For Laplace noise V decreases to its infimum b² (the Cramér–Rao bound, reached by the
median) as α -> 0, so its optimal α is 0: the L1 loss.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
from scipy import integrate, optimize

from huberkl import distributions, losses
from huberkl.toy.data import FAMILIES

# α/s searched on this log range; the optimum of every family here lies well inside, or
# (Laplace) at the lower end, which is reported as its limit 0.
_SEARCH = (1e-4, 1e2)


def _check_positive(name: str, value: float) -> float:
    """``value`` as a float, or the losses' one-line InputError naming ``name``."""
    losses._check_positive(name, value)
    return float(value)


def asymptotic_variance(family: str, alpha: float, scale: float = 1.0) -> float:
    """V(α) = E[ψ_α(ε)²] / P(|ε| <= α)² for ε from ``family`` with ``scale`` (quadrature)."""
    unit = distributions.law(distributions.check_family(family, FAMILIES))
    alpha, scale = _check_positive("alpha", alpha), _check_positive("scale", scale)
    a = alpha / scale  # V(α; s) = s²·V(α/s; 1)
    pdf = unit.pdf_scalar
    inner, _ = integrate.quad(lambda e: e * e * pdf(e), 0.0, a, epsabs=0, epsrel=1e-12, limit=200)
    tail = unit.sf_scalar(a)
    second = 2.0 * inner + 2.0 * a * a * tail
    inside = 1.0 - 2.0 * tail
    return scale**2 * second / inside**2


def laplace_variance(alpha: float, scale: float = 1.0) -> float:
    """Closed form of V(α) for Laplace(0, b): ``b²·(2 − 2(1 + a)e^{−a}) / (1 − e^{−a})²``, a = α/b."""
    a = _check_positive("alpha", alpha) / _check_positive("scale", scale)
    return scale**2 * (2.0 - 2.0 * (1.0 + a) * math.exp(-a)) / (-math.expm1(-a)) ** 2


@cache
def _unit_optimum(family: str) -> float:
    return _optimum(family, 1.0)


def _optimum(family: str, scale: float) -> float:
    grid = scale * np.geomspace(*_SEARCH, 61)
    values = np.array([asymptotic_variance(family, a, scale) for a in grid])
    i = int(np.argmin(values))
    if i == 0:  # still falling towards α -> 0: the infimum is the median's (Laplace)
        return 0.0
    if i == len(grid) - 1:
        return float("inf")
    res = optimize.minimize_scalar(
        lambda la: asymptotic_variance(family, math.exp(la), scale),
        bounds=(math.log(grid[i - 1]), math.log(grid[i + 1])),
        method="bounded",
        options={"xatol": 1e-10},
    )
    return float(math.exp(res.x))


def optimal_alpha(family: str, scale: float = 1.0, *, direct: bool = False) -> float:
    """argmin_α V(α) for noise ``family`` of ``scale`` (0.0 for Laplace: the L1 limit).

    By equivariance it is ``scale·α*(1)``, which is what is returned (cached);
    ``direct=True`` minimises at the given scale instead (used to test the equivariance).
    """
    family = distributions.check_family(family, FAMILIES)
    scale = _check_positive("scale", scale)
    if direct:
        return _optimum(family, scale)
    return scale * _unit_optimum(family)


def efficiency(family: str, alpha: float, scale: float = 1.0) -> float:
    """V(α*)/V(α): how much of the best Huber fit's precision α keeps (1 at the optimum)."""
    best = optimal_alpha(family, scale)
    v_best = (
        asymptotic_variance(family, best, scale)
        if best > 0
        else asymptotic_variance(family, scale * _SEARCH[0] / 10, scale)
    )
    return v_best / asymptotic_variance(family, alpha, scale)
