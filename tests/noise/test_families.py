"""Noise families: MLE against scipy.stats, difference laws against quadrature, truncated fits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import integrate, optimize

from huberkl.errors import InputError
from huberkl.noise import families as fam


def _pdf(z: float, family: str, mode: str) -> float:
    return float(np.exp(fam.logpdf(np.array([z]), family, 0.0, 1.0, mode))[0])


@pytest.mark.parametrize("family", fam.FAMILIES)
def test_gold_mle_matches_scipy_fit(family):
    rng = np.random.default_rng(3)
    x = fam.sample(family, 0.07, 3000, rng) + 0.02
    ours = fam.fit(x, family)
    dist = getattr(st, fam.SCIPY_NAME[family])
    loc0, scale0 = dist.fit(x)
    # scipy's own fit stops early for Cauchy: polish it with a tight Nelder-Mead
    res = optimize.minimize(
        lambda p: -dist.logpdf(x, p[0], math.exp(p[1])).sum(),
        [loc0, math.log(scale0)],
        method="Nelder-Mead",
        options={"xatol": 1e-11, "fatol": 1e-11, "maxiter": 4000},
    )
    loc, scale = res.x[0], math.exp(res.x[1])
    assert ours.loc == pytest.approx(loc, abs=1e-6 * scale)
    assert ours.scale == pytest.approx(scale, rel=1e-6)
    # the MLE: no lower log-likelihood than scipy's optimum, and ours is the same function
    assert ours.loglik >= dist.logpdf(x, loc0, scale0).sum() - 1e-6
    assert ours.loglik == pytest.approx(dist.logpdf(x, ours.loc, ours.scale).sum(), rel=1e-12)


@pytest.mark.parametrize("family", fam.FAMILIES)
def test_difference_law_is_the_convolution(family):
    dist = getattr(st, fam.SCIPY_NAME[family])
    total, _ = integrate.quad(lambda z: _pdf(z, family, "peer"), -np.inf, np.inf, limit=200)
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
        assert _pdf(d, family, "peer") == pytest.approx(conv, rel=1e-7, abs=1e-12)


def test_difference_law_facts_of_docs_noise():
    assert fam.logistic_diff_pdf0() == pytest.approx(1 / 6, rel=1e-12)
    var, _ = integrate.quad(lambda z: z * z * _pdf(z, "laplace", "peer"), -np.inf, np.inf)
    assert var == pytest.approx(4.0, rel=1e-8)  # Laplace(b) − Laplace(b): variance 4b²


@pytest.mark.parametrize("mode", fam.MODES)
@pytest.mark.parametrize("family", fam.FAMILIES)
def test_mass_matches_quadrature(family, mode):
    for a, b in ((-np.inf, -3.0), (-1.0, 0.4), (0.2, 5.0), (-np.inf, np.inf), (3.0, 40.0)):
        q, _ = integrate.quad(lambda z: _pdf(z, family, mode), a, b, limit=200)
        m = fam.mass(np.array([a]), np.array([b]), family, mode)[0]
        assert m == pytest.approx(q, rel=1e-8, abs=1e-13)


@pytest.mark.parametrize("family", fam.FAMILIES)
def test_peer_fit_recovers_the_per_annotation_scale(family):
    rng = np.random.default_rng(11)
    d = fam.sample(family, 0.05, 20000, rng) - fam.sample(family, 0.05, 20000, rng)
    assert fam.fit(d, family, "peer").scale == pytest.approx(0.05, rel=0.04)


@pytest.mark.parametrize("mode", fam.MODES)
@pytest.mark.parametrize("family", fam.FAMILIES)
def test_truncated_gradient_matches_finite_differences(family, mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    lo, hi = x - rng.uniform(0.1, 2, 200), x + rng.uniform(0.1, 2, 200)
    theta = np.array([0.1, 0.2])
    _, grad = fam._trunc_terms(theta, x, lo, hi, family, mode)
    h = 1e-6
    num = [
        (
            fam._trunc_terms(theta + e, x, lo, hi, family, mode)[0]
            - fam._trunc_terms(theta - e, x, lo, hi, family, mode)[0]
        )
        / (2 * h)
        for e in np.eye(2) * h
    ]
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("family", ["gaussian", "logistic", "cauchy"])
def test_truncated_fit_without_bounds_is_the_plain_fit(family):
    x = fam.sample(family, 0.1, 2000, np.random.default_rng(5))
    inf = np.full(len(x), np.inf)
    plain, trunc = fam.fit(x, family), fam.fit_truncated(x, -inf, inf, family)
    assert trunc.scale == pytest.approx(plain.scale, rel=1e-5)
    assert trunc.loglik == pytest.approx(plain.loglik, rel=1e-9)


@pytest.mark.parametrize("family", fam.FAMILIES)
def test_truncated_fit_recovers_the_scale_of_truncated_samples(family):
    rng = np.random.default_rng(8)
    x = fam.sample(family, 1.0, 60000, rng)
    half = rng.uniform(0.8, 3.0, len(x))  # each draw kept only inside its own interval
    keep = np.abs(x) <= half
    x, lo, hi = x[keep], -half[keep], half[keep]
    plain = fam.fit(x, family).scale
    trunc = fam.fit_truncated(x, lo, hi, family).scale
    assert trunc == pytest.approx(1.0, rel=0.05)
    assert abs(plain - 1.0) > abs(trunc - 1.0)


def test_fit_rows_is_per_row():
    rng = np.random.default_rng(2)
    x = rng.logistic(0, 0.3, (5, 400))
    loc, scale = fam.fit_rows(x, "logistic")
    for i in range(5):
        one = fam.fit(x[i], "logistic")
        assert (loc[i], scale[i]) == pytest.approx((one.loc, one.scale), rel=1e-7, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    hs.sampled_from(fam.FAMILIES),
    hs.sampled_from(fam.MODES),
    hs.floats(0.01, 100.0),
    hs.integers(0, 10_000),
)
def test_scale_is_equivariant(family, mode, c, seed):
    x = fam.sample(family, 1.0, 300, np.random.default_rng(seed))
    a, b = fam.fit(x, family, mode).scale, fam.fit(c * x, family, mode).scale
    assert b == pytest.approx(c * a, rel=1e-6)


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(4)
    small, big = rng.laplace(0, 0.1, 200), rng.laplace(0, 0.1, 20000)
    lo1, hi1 = fam.bootstrap_ci(small, "laplace")
    lo2, hi2 = fam.bootstrap_ci(big, "laplace")
    assert lo1 < fam.fit(small, "laplace").scale < hi1
    assert lo2 < fam.fit(big, "laplace").scale < hi2
    assert (hi2 - lo2) < (hi1 - lo1) / 5  # ~√100 = 10 times narrower
    assert lo2 < 0.1 < hi2


def test_bad_family_and_mode():
    with pytest.raises(InputError, match="allowed: laplace, gaussian, logistic, cauchy"):
        fam.fit(np.ones(3), "uniform")
    with pytest.raises(InputError, match="gold|peer"):
        fam.fit(np.arange(3.0), "laplace", "other")
    assert math.isfinite(fam.fit(np.arange(5.0), "cauchy").scale)


@pytest.mark.parametrize(("family", "mode"), [("logistic", "gold"), ("laplace", "peer")])
def test_vectorised_truncated_bootstrap_equals_refitting_each_resample(family, mode):
    from huberkl.noise.truncation import intervals, iou_of_errors

    rng = np.random.default_rng(6)
    e = fam.sample(family, 0.12, (1500, 4), rng)
    e = e[iou_of_errors(e) >= 0.5]
    lo, hi = intervals(e, 0.5)
    x, lo, hi = e[:, 0], lo[:, 0], hi[:, 0]
    best = fam.fit_truncated(x, lo, hi, family, mode)
    ci = fam.bootstrap_truncated_ci(x, lo, hi, family, mode, best, resamples=40, seed=3)
    idx = np.random.default_rng(3).integers(0, len(x), size=(40, len(x)))  # the same resamples
    scales = [fam.fit_truncated(x[i], lo[i], hi[i], family, mode).scale for i in idx]
    assert ci == pytest.approx(tuple(np.quantile(scales, [0.025, 0.975])), rel=1e-5)


def test_a_near_tie_between_families_is_a_warning():
    """Many Laplace errors pick Laplace clearly; a handful leave the family a near tie."""
    from huberkl.noise.estimate import TIE, estimate

    rng = np.random.default_rng(3)
    clear = estimate(rng.laplace(0, 0.05, size=(3000, 1)), coords=("x",), resamples=0)
    assert clear.coords["x"].family == "laplace"
    assert not any("near tie" in w for w in clear.warnings)
    few = estimate(rng.laplace(0, 0.05, size=(12, 1)), coords=("x",), resamples=0)
    fits = few.coords["x"].fits
    lead = sorted((f.loglik for f in fits.values()), reverse=True)
    assert lead[0] - lead[1] < TIE  # this sample is a tie (0.5), and says so
    assert any(w.startswith("x: laplace leads cauchy by only 0.5") for w in few.warnings)
