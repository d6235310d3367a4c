"""Fits of the noise families (huberkl.noise.fit, huberkl.noise.truncation): MLE against
scipy.stats, truncated fits. The laws themselves: tests/test_distributions.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hs
from scipy import optimize

from huberkl.distributions import FAMILIES, SCIPY_NAME, sample
from huberkl.errors import InputError
from huberkl.noise import fit as mle
from huberkl.noise import truncation as tr


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_mle_matches_scipy_fit(family):
    rng = np.random.default_rng(3)
    x = sample(family, 0.07, 3000, rng) + 0.02
    ours = mle.fit(x, family)
    dist = getattr(st, SCIPY_NAME[family])
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


@pytest.mark.parametrize("family", FAMILIES)
def test_peer_fit_recovers_the_per_annotation_scale(family):
    rng = np.random.default_rng(11)
    d = sample(family, 0.05, 20000, rng) - sample(family, 0.05, 20000, rng)
    assert mle.fit(d, family, "peer").scale == pytest.approx(0.05, rel=0.04)


@pytest.mark.parametrize("mode", mle.MODES)
@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_gradient_matches_finite_differences(family, mode):
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    lo, hi = x - rng.uniform(0.1, 2, 200), x + rng.uniform(0.1, 2, 200)
    theta = np.array([0.1, 0.2])
    dist = mle.law(family, mode)
    _, grad = tr._nll(theta, x, lo, hi, dist)
    h = 1e-6
    num = [
        (tr._nll(theta + e, x, lo, hi, dist)[0] - tr._nll(theta - e, x, lo, hi, dist)[0]) / (2 * h)
        for e in np.eye(2) * h
    ]
    np.testing.assert_allclose(grad, num, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("mode", mle.MODES)
@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_likelihood_of_many_rows_is_that_of_each_row(family, mode):
    # one function for one sample (fit_truncated) and many (the bootstrap's resamples)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 80))
    lo, hi = x - rng.uniform(0.1, 2, x.shape), x + rng.uniform(0.1, 2, x.shape)
    lo[0, :3], hi[1, :3] = -np.inf, np.inf
    theta = rng.normal(scale=0.3, size=(5, 2))
    dist = mle.law(family, mode)
    value, grad = tr._nll(theta, x, lo, hi, dist)
    assert value.shape == (5,) and grad.shape == (5, 2)
    assert np.isfinite(value).all() and np.isfinite(grad).all()  # infinite bounds too
    for b in range(5):
        v, g = tr._nll(theta[b], x[b], lo[b], hi[b], dist)
        assert v.shape == () and g.shape == (2,)
        np.testing.assert_allclose(value[b], v, rtol=1e-14, equal_nan=False)
        np.testing.assert_allclose(grad[b], g, rtol=1e-13, atol=1e-15, equal_nan=False)


@pytest.mark.parametrize("family", ["gaussian", "logistic", "cauchy"])
def test_truncated_fit_without_bounds_is_the_plain_fit(family):
    x = sample(family, 0.1, 2000, np.random.default_rng(5))
    inf = np.full(len(x), np.inf)
    plain, trunc = mle.fit(x, family), tr.fit_truncated(x, -inf, inf, family)
    assert trunc.scale == pytest.approx(plain.scale, rel=1e-5)
    assert trunc.loglik == pytest.approx(plain.loglik, rel=1e-9)


@pytest.mark.parametrize("family", FAMILIES)
def test_truncated_fit_recovers_the_scale_of_truncated_samples(family):
    rng = np.random.default_rng(8)
    x = sample(family, 1.0, 60000, rng)
    half = rng.uniform(0.8, 3.0, len(x))  # each draw kept only inside its own interval
    keep = np.abs(x) <= half
    x, lo, hi = x[keep], -half[keep], half[keep]
    plain = mle.fit(x, family).scale
    trunc = tr.fit_truncated(x, lo, hi, family).scale
    assert trunc == pytest.approx(1.0, rel=0.05)
    assert abs(plain - 1.0) > abs(trunc - 1.0)


def test_fit_rows_is_per_row():
    rng = np.random.default_rng(2)
    x = rng.logistic(0, 0.3, (5, 400))
    loc, scale = mle.fit_rows(x, "logistic")
    for i in range(5):
        one = mle.fit(x[i], "logistic")
        assert (loc[i], scale[i]) == pytest.approx((one.loc, one.scale), rel=1e-7, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(
    hs.sampled_from(FAMILIES),
    hs.sampled_from(mle.MODES),
    hs.floats(0.01, 100.0),
    hs.integers(0, 10_000),
)
def test_scale_is_equivariant(family, mode, c, seed):
    x = sample(family, 1.0, 300, np.random.default_rng(seed))
    a, b = mle.fit(x, family, mode).scale, mle.fit(c * x, family, mode).scale
    assert b == pytest.approx(c * a, rel=1e-6)


def test_bootstrap_interval_covers_the_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(4)
    small, big = rng.laplace(0, 0.1, 200), rng.laplace(0, 0.1, 20000)
    lo1, hi1 = mle.bootstrap_ci(small, "laplace")
    lo2, hi2 = mle.bootstrap_ci(big, "laplace")
    assert lo1 < mle.fit(small, "laplace").scale < hi1
    assert lo2 < mle.fit(big, "laplace").scale < hi2
    assert (hi2 - lo2) < (hi1 - lo1) / 5  # ~√100 = 10 times narrower
    assert lo2 < 0.1 < hi2


def test_bad_family_and_mode():
    with pytest.raises(InputError, match="allowed: laplace, gaussian, logistic, cauchy"):
        mle.fit(np.ones(3), "uniform")
    with pytest.raises(InputError, match="gold|peer"):
        mle.fit(np.arange(3.0), "laplace", "other")
    assert math.isfinite(mle.fit(np.arange(5.0), "cauchy").scale)


@pytest.mark.parametrize(("family", "mode"), [("logistic", "gold"), ("laplace", "peer")])
def test_vectorised_truncated_bootstrap_equals_refitting_each_resample(family, mode):
    rng = np.random.default_rng(6)
    e = sample(family, 0.12, (1500, 4), rng)
    e = e[tr.iou_of_errors(e) >= 0.5]
    lo, hi = tr.intervals(e, 0.5)
    x, lo, hi = e[:, 0], lo[:, 0], hi[:, 0]
    best = tr.fit_truncated(x, lo, hi, family, mode)
    ci = tr.bootstrap_truncated_ci(x, lo, hi, family, mode, best, resamples=40, seed=3)
    idx = np.random.default_rng(3).integers(0, len(x), size=(40, len(x)))  # the same resamples
    scales = [tr.fit_truncated(x[i], lo[i], hi[i], family, mode).scale for i in idx]
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
