"""The noise laws (huberkl.distributions), in float64, against independent references:
scipy.stats where it has the law, quadrature and finite differences where it has not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
from scipy import integrate

from huberkl import distributions as D
from huberkl.errors import InputError

LAWS = [(f, diff) for f in D.FAMILIES for diff in (False, True)]
# The difference laws that scipy.stats has: N(0, 2σ²) and Cauchy(2γ) at unit scale.
SCIPY_DIFFERENCE = {"gaussian": st.norm(scale=math.sqrt(2.0)), "cauchy": st.cauchy(scale=2.0)}
POINTS = np.array([-30.0, -7.5, -2.0, -1.0, -0.3, -1e-7, 0.0, 1e-9, 0.2, 0.999, 1.0, 1.5, 4.0])


def _scipy(family: str):
    return getattr(st, D.SCIPY_NAME[family])


def _pdf(family: str, difference: bool):
    unit = D.law(family, difference)
    return lambda z: float(np.exp(unit.logpdf(np.array([z])))[0])


def _quad(f, a: float, b: float) -> float:
    """∫_a^b f, split at 0 (the Laplace kink) when 0 is inside."""
    edges = [a, *([0.0] if a < 0.0 < b else []), b]
    return sum(
        integrate.quad(f, lo, hi, limit=400, epsabs=1e-14, epsrel=1e-12)[0]
        for lo, hi in zip(edges[:-1], edges[1:], strict=True)
    )


@pytest.mark.parametrize(("family", "difference"), LAWS)
def test_density_integrates_to_one(family, difference):
    assert _quad(_pdf(family, difference), -np.inf, np.inf) == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("family", D.FAMILIES)
def test_one_error_density_is_scipys(family):
    unit = D.law(family)
    np.testing.assert_allclose(unit.logpdf(POINTS), _scipy(family).logpdf(POINTS), rtol=1e-13)
    # at a location and scale: scipy.stats' loc and scale
    x = np.linspace(-3.0, 4.0, 29)
    np.testing.assert_allclose(
        unit.logpdf_at(x, 0.4, 2.5), _scipy(family).logpdf(x, 0.4, 2.5), rtol=1e-13
    )


@pytest.mark.parametrize("family", ["gaussian", "cauchy"])
def test_difference_law_of_gaussian_and_cauchy_is_the_family_again(family):
    unit = D.law(family, difference=True)
    ref = SCIPY_DIFFERENCE[family]
    np.testing.assert_allclose(unit.logpdf(POINTS), ref.logpdf(POINTS), rtol=1e-13)
    a = np.abs(POINTS)
    np.testing.assert_allclose(unit.sf(a), ref.sf(a), rtol=1e-12)


@pytest.mark.parametrize("family", D.FAMILIES)
def test_difference_law_is_the_convolution(family):
    dist = getattr(st, D.SCIPY_NAME[family])
    pdf = _pdf(family, True)
    total, _ = integrate.quad(pdf, -np.inf, np.inf, limit=200)
    assert total == pytest.approx(1.0, abs=1e-8)
    for d in (0.0, 1e-5, 0.3, 0.999, 1.0, 1.7, 6.0, -2.5):
        kinks = sorted({0.0, d})  # split at the kinks of the Laplace density

        def f(u, d=d):
            return dist.pdf(u) * dist.pdf(u - d)

        edges = [-np.inf, *kinks, np.inf]
        conv = sum(
            integrate.quad(f, a, b, epsabs=1e-14, epsrel=1e-12)[0]
            for a, b in zip(edges[:-1], edges[1:], strict=True)
        )
        assert pdf(d) == pytest.approx(conv, rel=1e-7, abs=1e-12)


def test_difference_law_facts_of_docs_noise():
    f0 = math.exp(D.law("logistic", difference=True).logpdf(np.array([0.0]))[0])
    assert f0 == pytest.approx(1 / 6, rel=1e-12)
    pdf = _pdf("laplace", True)
    var, _ = integrate.quad(lambda z: z * z * pdf(z), -np.inf, np.inf)
    assert var == pytest.approx(4.0, rel=1e-8)  # Laplace(b) − Laplace(b): variance 4b²


@pytest.mark.parametrize(("family", "difference"), LAWS)
def test_density_vanishes_at_infinity(family, difference):
    # truncation bounds may be infinite: log f there is −inf, not NaN
    unit = D.law(family, difference)
    with np.errstate(all="raise"):
        assert np.array_equal(unit.logpdf(np.array([-np.inf, np.inf])), [-np.inf, -np.inf])
        assert np.array_equal(unit.sf(np.array([np.inf])), [0.0])


@pytest.mark.parametrize(("family", "difference"), LAWS)
def test_derivative_matches_finite_differences(family, difference):
    unit = D.law(family, difference)
    # away from 0, where the Laplace density has its kink; 1 ± 1e-3 straddles the switch
    # from series to closed form of the Logistic difference law
    z = np.array([-25.0, -6.0, -1.0 - 1e-3, -0.5, -1e-3, 2e-4, 0.3, 0.999, 1.001, 2.0, 9.0])
    h = 1e-6
    num = (unit.logpdf(z + h) - unit.logpdf(z - h)) / (2 * h)
    np.testing.assert_allclose(unit.dlogpdf(z), num, rtol=1e-6, atol=1e-8)
    assert unit.dlogpdf(np.array([0.0]))[0] == 0.0  # symmetric: the mode is 0


@pytest.mark.parametrize(("family", "difference"), LAWS)
def test_tail_is_one_minus_the_cdf_by_quadrature(family, difference):
    unit, pdf = D.law(family, difference), _pdf(family, difference)
    for a in (0.0, 0.05, 0.3, 1.0, 2.5):
        one_minus_cdf = 1.0 - _quad(pdf, -np.inf, a)
        assert unit.sf(np.array([a]))[0] == pytest.approx(one_minus_cdf, rel=1e-9, abs=1e-14)
    for a in (7.0, 20.0, 60.0):  # far tails: the upper integral (1 − CDF would cancel)
        assert unit.sf(np.array([a]))[0] == pytest.approx(_quad(pdf, a, np.inf), rel=1e-8)
    assert unit.sf(np.array([np.inf]))[0] == 0.0


@pytest.mark.parametrize("family", D.FAMILIES)
def test_one_error_tail_and_cdf_are_scipys(family):
    unit, ref = D.law(family), _scipy(family)
    a = np.array([0.0, 0.01, 0.5, 1.0, 3.0, 10.0, 35.0])
    np.testing.assert_allclose(unit.sf(a), ref.sf(a), rtol=1e-12)
    np.testing.assert_allclose(unit.cdf(POINTS), ref.cdf(POINTS), rtol=1e-12)


@pytest.mark.parametrize("mode", ["gold", "peer"])
@pytest.mark.parametrize("family", D.FAMILIES)
def test_mass_matches_quadrature(family, mode):
    unit = D.law(family, mode == "peer")
    pdf = _pdf(family, mode == "peer")
    for a, b in ((-np.inf, -3.0), (-1.0, 0.4), (0.2, 5.0), (-np.inf, np.inf), (3.0, 40.0)):
        q, _ = integrate.quad(pdf, a, b, limit=200)
        m = unit.mass(np.array([a]), np.array([b]))[0]
        assert m == pytest.approx(q, rel=1e-8, abs=1e-13)


@pytest.mark.parametrize("family", D.FAMILIES)
def test_scalar_forms_are_the_array_forms_and_scipys(family):
    unit, ref = D.law(family), _scipy(family)
    for z in POINTS:
        assert unit.pdf_scalar(float(z)) == pytest.approx(ref.pdf(z), rel=1e-13)
        assert unit.pdf_scalar(float(z)) == pytest.approx(
            math.exp(unit.logpdf(np.array([z]))[0]), rel=1e-14
        )
        a = abs(float(z))
        assert unit.sf_scalar(a) == pytest.approx(ref.sf(a), rel=1e-13)
        assert unit.sf_scalar(a) == pytest.approx(unit.sf(np.array([a]))[0], rel=1e-14)
    assert D.law(family, difference=True).pdf_scalar is None


@pytest.mark.parametrize("family", D.FAMILIES)
def test_samples_follow_the_law_and_its_scale(family):
    draws = D.sample(family, 2.5, 20000, np.random.default_rng(0))
    assert draws.dtype == np.float64 and draws.shape == (20000,)
    assert st.kstest(draws, _scipy(family)(scale=2.5).cdf).pvalue > 1e-3
    assert st.kstest(draws, _scipy(family)(scale=2.5 * 1.25).cdf).pvalue < 1e-6


@pytest.mark.parametrize("family", D.FAMILIES)
def test_difference_samples_follow_the_difference_law(family):
    s = 0.7
    draws = D.sample(family, s, 20000, np.random.default_rng(1), difference=True)
    unit = D.law(family, difference=True)
    assert st.kstest(draws, lambda d: unit.cdf(d / s)).pvalue > 1e-3
    assert st.kstest(draws, lambda d: D.law(family).cdf(d / s)).pvalue < 1e-6
    if family in SCIPY_DIFFERENCE:
        assert st.kstest(draws / s, SCIPY_DIFFERENCE[family].cdf).pvalue > 1e-3


def test_samples_are_numpys_generators_draw_for_draw():
    # seeded runs (the toy's labels, synthetic sets) depend on exactly these draws
    def pair(seed):
        return np.random.default_rng(seed), np.random.default_rng(seed)

    a, b = pair(5)
    assert np.array_equal(D.sample("laplace", 0.3, 7, a), b.laplace(0.0, 0.3, 7))
    a, b = pair(6)
    assert np.array_equal(D.sample("gaussian", 0.3, (2, 3), a), b.normal(0.0, 0.3, (2, 3)))
    a, b = pair(7)
    assert np.array_equal(D.sample("logistic", 0.3, 7, a), b.logistic(0.0, 0.3, 7))
    a, b = pair(8)
    assert np.array_equal(D.sample("cauchy", 0.3, 7, a), 0.3 * b.standard_cauchy(7))


def test_check_family():
    assert D.check_family("Cauchy") == "cauchy"
    with pytest.raises(InputError, match="allowed: laplace, gaussian, logistic, cauchy"):
        D.check_family("uniform")
    with pytest.raises(InputError, match="'gaussian'; allowed: laplace, cauchy"):
        D.check_family("gaussian", ("laplace", "cauchy"))
    with pytest.raises(InputError, match="uniform"):
        D.law("uniform")
