"""The toy problem's data (Section 5): basis, ground truth, noise and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.polynomial import legendre as npleg
from scipy import stats
from torch.testing import assert_close

from huberkl import distributions
from huberkl.errors import InputError
from huberkl.toy import data

THETA = [6, -3, -25, 15, 20, -10]


def test_legendre_basis_matches_numpy():
    x = torch.linspace(-2, 2, 101, dtype=torch.float64)
    got = data.legendre_basis(x, 8, 2.0)
    want = torch.from_numpy(npleg.legvander(x.numpy() / 2.0, 7))
    assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert data.legendre_basis(x, 1, 2.0).shape == (101, 1)


def test_truth_in_legendre_basis_reproduces_the_paper_polynomial():
    x = np.linspace(-2, 2, 57)
    c = data.truth_legendre(np.array(THETA, dtype=float), 2.0)
    A = data.legendre_basis(torch.from_numpy(x), len(c), 2.0).numpy()
    f = 6 * x**5 - 3 * x**4 - 25 * x**3 + 15 * x**2 + 20 * x - 10
    np.testing.assert_allclose(A @ c, f, rtol=0, atol=1e-11)
    np.testing.assert_allclose(data.polyval(np.array(THETA, dtype=float), x), f, rtol=0, atol=1e-11)


@pytest.mark.parametrize(
    ("family", "dist"),
    [("laplace", stats.laplace), ("logistic", stats.logistic), ("cauchy", stats.cauchy)],
)
def test_noise_has_the_named_distribution_and_scale(family, dist):
    rng = np.random.default_rng(0)
    draws = distributions.sample(family, 2.5, 20000, rng)
    # Kolmogorov–Smirnov against the scipy distribution with the same scale
    assert stats.kstest(draws, dist(scale=2.5).cdf).pvalue > 1e-3
    assert stats.kstest(draws, dist(scale=1.0).cdf).pvalue < 1e-6


def test_unknown_family_is_an_input_error():
    with pytest.raises(InputError, match="gauss"):
        distributions.check_family("gauss", data.FAMILIES)


def _seed(seed=0, scales=(0.5, 2.0), families=("laplace", "cauchy"), dtype=torch.float64):
    return data.make_seed_data(
        list(families),
        list(scales),
        seed,
        n=500,
        k=8,
        delta=2.0,
        theta=THETA,
        n_test=300,
        dtype=dtype,
    )


def test_seed_data_is_reproducible_and_streams_are_independent():
    a, b = _seed(), _seed()
    assert torch.equal(a.Y, b.Y) and torch.equal(a.A, b.A)
    assert not torch.equal(_seed(seed=1).Y, a.Y)
    # adding a scale does not change the draws of the others
    c = _seed(scales=(0.5, 1.0, 2.0))
    assert torch.equal(c.Y[[0, 2, 3, 5]], a.Y)


def test_test_rmse_is_zero_for_the_truth_and_matches_direct_evaluation():
    d = _seed()
    truth = torch.from_numpy(data.truth_legendre(np.array(THETA, dtype=float), 2.0)).unsqueeze(0)
    truth = torch.cat([truth, truth.new_zeros(1, 8 - truth.shape[1])], dim=1)
    assert float(d.test_rmse(truth)) < 1e-6
    # an arbitrary polynomial: the quadratic form equals the RMSE over the sampled test points
    coef = torch.randn(3, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x_test = data._rng(0, 0, data._TEST_STREAM).uniform(-2, 2, 300)
    A_test = data.legendre_basis(torch.from_numpy(x_test), 8, 2.0)
    direct = (
        ((coef @ A_test.T - torch.from_numpy(data.polyval(np.array(THETA, float), x_test))) ** 2)
        .mean(1)
        .sqrt()
    )
    assert_close(d.test_rmse(coef), direct, rtol=1e-10, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "toy.k"),
        ({"n": 5}, "toy.n"),
        ({"delta": 0.0}, "toy.delta"),
        ({"n_test": 0}, "toy.n_test"),
    ],
)
def test_bad_problem_settings_raise(kwargs, message):
    args = {"n": 100, "k": 8, "delta": 2.0, "n_test": 10, "theta": THETA, **kwargs}
    with pytest.raises(InputError, match=message):
        data.check_problem(**args)
