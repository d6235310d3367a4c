"""The noise laws, in one place: four families and the difference law of each.

Families and their scale, scipy.stats' ``scale`` of the law named in :data:`SCIPY_NAME`
(docs/NOISE.md, "Scale parameters"): Laplace b (std √2·b), Gaussian σ, Logistic s (std
π·s/√3), Cauchy γ (no moments). Every law here is symmetric about 0; at location ``loc``
and scale ``s`` its density is f((x − loc)/s)/s with f the unit law's.

Each family has two laws (:func:`law`): the error of one annotation, and the law of the
difference of two independent errors of that family and scale, what two annotators of the
same quality disagree by (docs/NOISE.md, "Difference of two independent errors"). The
difference law is parametrised by the per-annotation scale too: ``law(f, difference=True)``
at scale s is the law of s·(Z₁ − Z₂) with Z₁, Z₂ unit errors (Gaussian: N(0, 2σ²);
Cauchy: Cauchy(2γ); Laplace and Logistic: the convolutions written out below).

A :class:`Law` gives, at unit scale and vectorised over numpy arrays: ``logpdf`` (log f;
−inf at ±inf, where truncation bounds may lie), ``dlogpdf`` (d log f/dz, at finite z),
``sf`` (the upper tail P(Z > a) for a >= 0, 0 at ∞) and from the tails
:meth:`Law.mass` and :meth:`Law.cdf`, accurate in both tails. The single-error laws also
have ``pdf_scalar`` and ``sf_scalar``, the same functions on one Python float, for
quadrature (``huberkl.toy.theory``): ``scipy.integrate.quad`` calls them thousands of times,
and the toy's optimal α are computed with exactly these formulas. :func:`sample` draws
either law. Tests: tests/test_distributions.py (against scipy.stats and quadrature).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import special

from huberkl.errors import InputError

FAMILIES = ("laplace", "gaussian", "logistic", "cauchy")
SCIPY_NAME = {"laplace": "laplace", "gaussian": "norm", "logistic": "logistic", "cauchy": "cauchy"}
_LOG2PI = math.log(2.0 * math.pi)

Array = np.ndarray
ArrayFn = Callable[[Array], Array]
FloatFn = Callable[[float], float]


def check_family(name: str, allowed: tuple[str, ...] = FAMILIES) -> str:
    """``name`` lower-cased if it is one of ``allowed`` (default: every family), else an
    ``InputError`` that lists them."""
    key = str(name).lower()
    if key not in allowed:
        raise InputError(f"unknown noise family {name!r}; allowed: {', '.join(allowed)}")
    return key


@dataclass(frozen=True)
class Law:
    """One law at unit scale: log density, its derivative and upper tail, on arrays."""

    family: str
    difference: bool  # the difference of two independent errors, not one error
    logpdf: ArrayFn
    dlogpdf: ArrayFn
    sf: ArrayFn  # P(Z > a), for a >= 0
    pdf_scalar: FloatFn | None = None  # f(z) on one float (single-error laws)
    sf_scalar: FloatFn | None = None  # P(Z > a) on one float a >= 0 (single-error laws)

    def logpdf_at(self, x: Array, loc: float, scale: float) -> Array:
        """Log density of the law with ``loc`` and ``scale`` at ``x``."""
        z = (np.asarray(x, dtype=np.float64) - loc) / scale
        return self.logpdf(z) - math.log(scale)

    def mass(self, za: Array, zb: Array) -> Array:
        """P(za <= Z <= zb), elementwise, from upper tails only (accurate in both tails)."""
        sf = self.sf
        za, zb = np.broadcast_arrays(np.asarray(za, float), np.asarray(zb, float))
        out = np.empty(za.shape)
        right = za >= 0
        left = zb <= 0
        mid = ~right & ~left
        out[right] = sf(za[right]) - sf(np.abs(zb[right]))
        out[left] = sf(-zb[left]) - sf(np.abs(za[left]))
        out[mid] = 1.0 - sf(-za[mid]) - sf(zb[mid])
        return out

    def cdf(self, z: Array) -> Array:
        """P(Z <= z)."""
        z = np.asarray(z, dtype=np.float64)
        return self.mass(np.full(z.shape, -np.inf), z)


# --------------------------------------------------------------------------- one error


_ONE = {
    "laplace": Law(
        "laplace",
        False,
        logpdf=lambda z: -np.abs(z) - math.log(2.0),
        dlogpdf=lambda z: -np.sign(z),
        sf=lambda a: 0.5 * np.exp(-a),
        pdf_scalar=lambda z: 0.5 * math.exp(-abs(z)),
        sf_scalar=lambda a: 0.5 * math.exp(-a),
    ),
    "gaussian": Law(
        "gaussian",
        False,
        logpdf=lambda z: -0.5 * z * z - 0.5 * _LOG2PI,
        dlogpdf=lambda z: -z,
        sf=lambda a: special.ndtr(-a),
        pdf_scalar=lambda z: math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi),
        sf_scalar=lambda a: 0.5 * math.erfc(a / math.sqrt(2.0)),
    ),
    "logistic": Law(
        "logistic",
        False,
        logpdf=lambda z: -np.abs(z) - 2.0 * np.log1p(np.exp(-np.abs(z))),
        dlogpdf=lambda z: -np.tanh(0.5 * z),
        sf=lambda a: special.expit(-a),
        pdf_scalar=lambda z: math.exp(-abs(z)) / (1.0 + math.exp(-abs(z))) ** 2,
        sf_scalar=lambda a: math.exp(-a) / (1.0 + math.exp(-a)),
    ),
    "cauchy": Law(
        "cauchy",
        False,
        logpdf=lambda z: -math.log(math.pi) - np.log1p(z * z),
        dlogpdf=lambda z: -2.0 * z / (1.0 + z * z),
        sf=lambda a: np.arctan2(1.0, a) / math.pi,
        pdf_scalar=lambda z: 1.0 / (math.pi * (1.0 + z * z)),
        sf_scalar=lambda a: math.atan2(1.0, a) / math.pi,
    ),
}


# --------------------------------------------------------------------------- difference laws
# Gaussian and Cauchy differences are the family again (scale √2 and 2); the Laplace
# difference is (1 + |z|)e^{−|z|}/4. The Logistic difference, with a = |z|, is
# e^{−a}·N(a)/(1 − e^{−a})³ with N(a) = (a − 2) + (a + 2)e^{−a}, whose closed form cancels
# catastrophically near 0 (f(0) = 1/6): below a = 1, N and N' are their power series.


def _below_one(a: Array, direct: Array, shift: int) -> Array:
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


def _logistic_diff_n(a: Array) -> Array:
    """N(a) = (a − 2) + (a + 2)e^{−a}, with its series Σ_{n≥3} (−1)^{n+1}(n−2)aⁿ/n! below 1."""
    return _below_one(a, (a - 2.0) + (a + 2.0) * np.exp(-a), shift=0)


def _logistic_diff_dn(a: Array) -> Array:
    """N'(a) = 1 − (a + 1)e^{−a}, by its series Σ_{n≥3} (−1)^{n+1}(n−2)a^{n−1}/(n−1)! below 1."""
    return _below_one(a, 1.0 - (a + 1.0) * np.exp(-a), shift=1)


def _laplace_diff_logpdf(z: Array) -> Array:
    a = np.abs(z)
    with np.errstate(invalid="ignore"):  # inf − inf at |z| = ∞, where f = 0
        out = np.log1p(a) - a - math.log(4.0)
    return np.where(np.isinf(a), -np.inf, out)


def _logistic_diff_logpdf(z: Array) -> Array:
    a = np.abs(z)
    out = np.full(a.shape, math.log(1.0 / 6.0))
    out[np.isinf(a)] = -np.inf
    nz = (a > 1e-6) & np.isfinite(a)
    an = a[nz]
    out[nz] = -an + np.log(_logistic_diff_n(an)) - 3.0 * np.log(-np.expm1(-an))
    return out


def _logistic_diff_dlogpdf(z: Array) -> Array:
    a = np.abs(z)
    out = np.zeros(a.shape)
    nz = a > 1e-6
    an = a[nz]
    d = -1.0 + _logistic_diff_dn(an) / _logistic_diff_n(an) - 3.0 * np.exp(-an) / -np.expm1(-an)
    out[nz] = d
    return np.sign(z) * out


def _logistic_diff_sf(a: Array) -> Array:
    """Upper tail at a >= 0: u(a − 1 + u)/(1 − u)², u = e^{−a} (docs/NOISE.md)."""
    u = np.exp(-a)
    core = a + np.expm1(-a)  # a − 1 + e^{−a}
    small = a < 0.1
    s = a[small]
    core[small] = s**2 / 2 - s**3 / 6 + s**4 / 24 - s**5 / 120 + s**6 / 720 - s**7 / 5040
    with np.errstate(invalid="ignore", divide="ignore"):
        out = u * core / np.expm1(-a) ** 2
    return np.where(a == 0, 0.5, np.where(np.isinf(a), 0.0, out))


_DIFFERENCE = {
    "laplace": Law(
        "laplace",
        True,
        logpdf=_laplace_diff_logpdf,
        dlogpdf=lambda z: -z / (1.0 + np.abs(z)),
        sf=lambda a: 0.25 * (2.0 + np.minimum(a, 1e300)) * np.exp(-a),
    ),
    "gaussian": Law(
        "gaussian",
        True,
        logpdf=lambda z: -0.25 * z * z - 0.5 * math.log(4.0 * math.pi),
        dlogpdf=lambda z: -0.5 * z,
        sf=lambda a: special.ndtr(-a / math.sqrt(2.0)),
    ),
    "logistic": Law(
        "logistic",
        True,
        logpdf=_logistic_diff_logpdf,
        dlogpdf=_logistic_diff_dlogpdf,
        sf=_logistic_diff_sf,
    ),
    "cauchy": Law(
        "cauchy",
        True,
        logpdf=lambda z: math.log(2.0 / math.pi) - np.log(4.0 + z * z),
        dlogpdf=lambda z: -2.0 * z / (4.0 + z * z),
        sf=lambda a: np.arctan2(2.0, a) / math.pi,
    ),
}


def law(family: str, difference: bool = False) -> Law:
    """The unit law of one error of ``family``, or with ``difference`` of the difference
    of two independent ones."""
    family = check_family(family)
    return _DIFFERENCE[family] if difference else _ONE[family]


def sample(
    family: str,
    scale: float,
    size: int | tuple[int, ...],
    rng: np.random.Generator,
    difference: bool = False,
) -> Array:
    """Draws of ``family`` with ``scale`` (numpy's generators; Cauchy as
    scale·standard_cauchy); with ``difference``, of the difference of two independent
    draws (the first array of draws minus a second one)."""
    family = check_family(family)
    if difference:
        return sample(family, scale, size, rng) - sample(family, scale, size, rng)
    if family == "laplace":
        return rng.laplace(0.0, scale, size)
    if family == "gaussian":
        return rng.normal(0.0, scale, size)
    if family == "logistic":
        return rng.logistic(0.0, scale, size)
    return scale * rng.standard_cauchy(size)
