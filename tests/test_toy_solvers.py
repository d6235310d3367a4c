"""The batched Huber solvers against scipy, float32 against float64, and GD's gap.

The exact solver minimises Σ H_α(y − Aθ) (Eq. 4); ``scipy.optimize.least_squares`` with
``loss="huber", f_scale=α`` minimises the same sum (its cost per residual is exactly
H_α(r), docs/FRAMEWORK-DEFAULTS.md), so the two objectives must agree.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from torch.testing import assert_close

from huberkl.toy import solvers
from huberkl.toy.data import make_seed_data, sample_noise

THETA = [6, -3, -25, 15, 20, -10]


def _scipy_cost(A: np.ndarray, y: np.ndarray, alpha: float) -> float:
    fit = least_squares(
        lambda th: y - A @ th,
        np.zeros(A.shape[1]),
        jac=lambda th: -A,
        loss="huber",
        f_scale=alpha,
        ftol=1e-15,
        xtol=1e-15,
        gtol=1e-15,
        max_nfev=5000,
    )
    return float(fit.cost)


def _random_problem(rng: np.random.Generator, n: int, k: int, family: str):
    A = rng.normal(size=(n, k))
    y = A @ rng.normal(scale=3.0, size=k) + sample_noise(family, 1.0, n, rng)
    return A, y


@pytest.mark.parametrize("case", range(6))
def test_exact_solver_matches_scipy_least_squares_huber(case):
    rng = np.random.default_rng(100 + case)
    n, k = int(rng.integers(200, 800)), int(rng.integers(1, 7))
    family = ("laplace", "logistic", "cauchy")[case % 3]
    A, y = _random_problem(rng, n, k, family)
    alphas = np.array([0.05, 0.3, 1.0, 2.5, 10.0, 100.0])  # noise scale 1
    design = solvers.Design.from_matrix(torch.from_numpy(A))
    res = solvers.solve_exact(
        design,
        torch.from_numpy(y)[None],
        torch.from_numpy(alphas),
        torch.zeros(len(alphas), dtype=torch.long),
    )
    assert bool(res.converged.all()), res.iters
    for i, a in enumerate(alphas):
        ref = _scipy_cost(A, y, a)
        ours = float(res.loss[i])
        assert abs(ours - ref) <= 1e-6 * ref, (a, ours, ref)
        # the fresh objective at our θ is the one reported
        fresh = solvers.objective(
            design,
            torch.from_numpy(y)[None],
            res.theta[i : i + 1],
            torch.tensor([a]),
            torch.zeros(1, dtype=torch.long),
        )
        assert abs(float(fresh) - ours) <= 1e-10 * ref


def test_exact_solver_never_claims_convergence_it_did_not_reach():
    """α far below the noise with few points (fewer than K in the quadratic zone): the
    iteration may need more steps than allowed, but a fit flagged converged is right."""
    rng = np.random.default_rng(7)
    claimed = 0
    for _ in range(8):
        n, k = int(rng.integers(30, 120)), int(rng.integers(2, 6))
        A, y = _random_problem(rng, n, k, "cauchy")
        design = solvers.Design.from_matrix(torch.from_numpy(A))
        res = solvers.solve_exact(
            design,
            torch.from_numpy(y)[None],
            torch.tensor([0.01], dtype=torch.float64),
            max_iter=30,
        )
        if bool(res.converged[0]):
            claimed += 1
            ref = _scipy_cost(A, y, 0.01)
            assert abs(float(res.loss[0]) - ref) <= 1e-6 * ref
        else:
            assert float(res.gap[0]) > 1e-15
    assert claimed >= 1  # the check above ran


def _toy(dtype, families=("laplace", "logistic", "cauchy"), scales=(0.5, 2.0), seed=0, n=3000):
    d = make_seed_data(
        list(families),
        list(scales),
        seed,
        n=n,
        k=8,
        delta=2.0,
        theta=THETA,
        n_test=2000,
        dtype=dtype,
    )
    m = d.Y.shape[0]
    alphas = np.geomspace(0.02, 20, 13)
    rows = torch.arange(m).repeat_interleave(len(alphas))
    alpha = torch.as_tensor(np.tile(alphas, m), dtype=dtype)
    return d, solvers.Design.from_matrix(d.A), rows, alpha


def test_gradient_vanishes_at_the_exact_minimiser():
    d, design, rows, alpha = _toy(torch.float64)
    res = solvers.solve_exact(design, d.Y, alpha, rows)
    assert bool(res.converged.all())
    r = (d.Y[rows] - res.theta @ design.At) / alpha[:, None]
    g = r.clamp(-1, 1) @ design.A  # minus the gradient of Σ H_1(r/α), in units of α
    scale = r.clamp(-1, 1).abs() @ design.A.abs()  # size of the terms that cancel
    assert float((g.abs() / scale).max()) < 1e-9


def test_waves_find_the_same_minimum_as_independent_fits():
    d, design, rows, alpha = _toy(torch.float64)
    waves = solvers.solve_exact(design, d.Y, alpha, rows)
    pick = torch.arange(0, len(rows), 7)
    single = [
        solvers.solve_exact(design, d.Y, alpha[j : j + 1], rows[j : j + 1]) for j in pick.tolist()
    ]
    loss = torch.cat([s.loss for s in single])
    assert_close(waves.loss[pick], loss, rtol=1e-12, atol=0)
    assert_close(waves.theta[pick], torch.cat([s.theta for s in single]), rtol=1e-7, atol=1e-9)


def test_float32_agrees_with_float64():
    d32, des32, rows, a32 = _toy(torch.float32)
    d64, des64, _, a64 = _toy(torch.float64)
    r32 = solvers.solve_exact(des32, d32.Y, a32, rows)
    r64 = solvers.solve_exact(des64, d64.Y, a64, rows)
    assert bool(r32.converged.all()) and bool(r64.converged.all())
    assert_close(r32.loss, r64.loss, rtol=2e-5, atol=0)
    # the test RMSE (what the grid search ranks α by) to 1e-3 relative
    assert_close(d32.test_rmse(r32.theta), d64.test_rmse(r64.theta), rtol=1e-3, atol=0)
    # and the α with the lowest test RMSE of every label row is the same
    best32 = d32.test_rmse(r32.theta).view(-1, 13).argmin(1)
    best64 = d64.test_rmse(r64.theta).view(-1, 13).argmin(1)
    assert torch.equal(best32, best64)


def test_solver_is_deterministic_and_order_free():
    d, design, rows, alpha = _toy(torch.float32)
    a = solvers.solve_exact(design, d.Y, alpha, rows)
    b = solvers.solve_exact(design, d.Y, alpha, rows)
    assert torch.equal(a.theta, b.theta) and torch.equal(a.loss, b.loss)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    c = solvers.solve_exact(design, d.Y, alpha[perm], rows[perm])
    assert torch.equal(c.theta, a.theta[perm])


def test_gd_reaches_the_exact_minimum_when_alpha_is_large_and_flags_a_gap_when_small():
    d, design, rows, alpha = _toy(torch.float64, families=("logistic",), scales=(1.0,))
    exact = solvers.solve_exact(design, d.Y, alpha, rows)
    lr = torch.full_like(alpha, 1.9)
    gd = solvers.solve_gd(design, d.Y, alpha, lr, 2000, rows)
    gap = (gd.loss - exact.loss) / exact.loss
    assert float(gap.min()) >= -1e-12  # GD never beats the exact minimum
    assert float(gap[-1]) < 1e-8  # α = 20: quadratic zone, GD converges
    assert float(gap[0]) > 1e-2  # α = 0.02: from θ = 0 it crawls at lr·α per step
    # GD's objective is the fresh objective of its θ
    assert_close(gd.loss, solvers.objective(design, d.Y, gd.theta, alpha, rows), rtol=1e-12, atol=0)


def test_gd_update_matches_autograd_on_the_mean_huber_loss():
    d, design, rows, alpha = _toy(torch.float64, families=("cauchy",), scales=(1.0,), n=500)
    rows, alpha = rows[::4], alpha[::4]
    lr = torch.full_like(alpha, 0.7)
    got = solvers.solve_gd(design, d.Y, alpha, lr, 3, rows).theta
    theta = torch.zeros(len(alpha), design.k, dtype=torch.float64)
    for _ in range(3):
        t = theta.clone().requires_grad_(True)
        r = d.Y[rows] - t @ design.At
        # H_α(r) = α²·H_1(r/α); the mean over points per fit, summed over fits
        loss = (
            (
                alpha[:, None] ** 2
                * torch.nn.functional.huber_loss(
                    r / alpha[:, None], torch.zeros_like(r), reduction="none", delta=1.0
                )
            )
            .mean(1)
            .sum()
        )
        (grad,) = torch.autograd.grad(loss, t)
        theta = theta - lr[:, None] * grad
    assert_close(got, theta, rtol=1e-10, atol=1e-10)
