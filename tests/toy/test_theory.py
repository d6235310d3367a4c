"""The asymptotically optimal α per noise family (what Figure 2 is compared with)."""

from __future__ import annotations

import math

import pytest
from scipy import integrate, optimize, stats

from huberkl.errors import InputError
from huberkl.toy import theory

_SCIPY = {"laplace": stats.laplace, "logistic": stats.logistic, "cauchy": stats.cauchy}


def _variance_scipy(family: str, alpha: float, scale: float) -> float:
    """Independent oracle: V(α) from scipy.stats' density and cdf (quadrature inside ±α)."""
    dist = _SCIPY[family](scale=scale)
    inner = integrate.quad(
        lambda e: e * e * dist.pdf(e), -alpha, alpha, epsabs=0, epsrel=1e-13, limit=400
    )[0]
    inside = dist.cdf(alpha) - dist.cdf(-alpha)
    return (inner + alpha**2 * (1 - inside)) / inside**2


@pytest.mark.parametrize("family", ["laplace", "logistic", "cauchy"])
@pytest.mark.parametrize(("alpha", "scale"), [(0.1, 1.0), (1.3, 1.0), (2.0, 3.0), (7.0, 0.5)])
def test_variance_matches_scipy_stats_quadrature(family, alpha, scale):
    assert theory.asymptotic_variance(family, alpha, scale) == pytest.approx(
        _variance_scipy(family, alpha, scale), rel=1e-6
    )


@pytest.mark.parametrize(("alpha", "scale"), [(0.01, 1.0), (0.7, 2.0), (5.0, 0.3)])
def test_laplace_closed_form(alpha, scale):
    assert theory.asymptotic_variance("laplace", alpha, scale) == pytest.approx(
        theory.laplace_variance(alpha, scale), rel=1e-10
    )


def test_limits_are_the_median_and_the_mean():
    # α -> 0: the median, V = 1/(4 f(0)²); α -> ∞: the mean, V = Var(ε)
    assert theory.asymptotic_variance("laplace", 1e-6) == pytest.approx(1.0, rel=1e-5)
    assert theory.asymptotic_variance("cauchy", 1e-6) == pytest.approx(math.pi**2 / 4, rel=1e-5)
    assert theory.asymptotic_variance("logistic", 1e-6) == pytest.approx(4.0, rel=1e-5)
    assert theory.asymptotic_variance("logistic", 200.0) == pytest.approx(math.pi**2 / 3, rel=1e-6)
    assert theory.asymptotic_variance("laplace", 200.0) == pytest.approx(2.0, rel=1e-6)


def test_laplace_optimum_is_zero_the_l1_loss():
    assert theory.optimal_alpha("laplace") == 0.0
    assert theory.optimal_alpha("laplace", 3.0, direct=True) == 0.0


@pytest.mark.parametrize("family", ["logistic", "cauchy"])
def test_optimum_minimises_the_scipy_variance_and_is_linear_in_scale(family):
    unit = theory.optimal_alpha(family)
    brute = optimize.minimize_scalar(
        lambda la: _variance_scipy(family, math.exp(la), 1.0),
        bounds=(-5, 3),
        method="bounded",
        options={"xatol": 1e-8},
    )
    # the minimum is flat, so compare values (well conditioned) and the location loosely
    assert _variance_scipy(family, unit, 1.0) <= brute.fun * (1 + 1e-10)
    assert unit == pytest.approx(math.exp(brute.x), rel=1e-3)
    for s in (0.25, 2.0, 7.5):
        assert theory.optimal_alpha(family, s, direct=True) == pytest.approx(s * unit, rel=1e-5)
        assert theory.optimal_alpha(family, s) == pytest.approx(s * unit, rel=1e-12)


def test_known_values():
    # regression values (checked by brute force above): logistic ≈ 2.105 s, Cauchy ≈ 0.395 γ
    assert theory.optimal_alpha("logistic") == pytest.approx(2.1049, abs=2e-4)
    assert theory.optimal_alpha("cauchy") == pytest.approx(0.3948, abs=2e-4)
    assert theory.efficiency("logistic", theory.optimal_alpha("logistic")) == pytest.approx(1.0)
    assert theory.efficiency("logistic", 0.1) < 0.9


@pytest.mark.parametrize(
    ("args", "message"),
    [(("gauss", 1.0), "gauss"), (("cauchy", 0.0), "alpha"), (("cauchy", 1.0, -2.0), "scale")],
)
def test_bad_input(args, message):
    with pytest.raises(InputError, match=message):
        theory.asymptotic_variance(*args)
