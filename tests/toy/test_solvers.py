"""The batched Huber solvers against scipy, float32 against float64, and GD's gap; which
designs are refused as rank deficient, the same on every BLAS/LAPACK code path.

The exact solver minimises Σ H_α(y − Aθ) (Eq. 4); ``scipy.optimize.least_squares`` with
``loss="huber", f_scale=α`` minimises the same sum (its cost per residual is exactly
H_α(r), docs/FRAMEWORK-DEFAULTS.md), so the two objectives must agree.

Every test runs with 1 and 2 torch threads. What is guaranteed bitwise is only a rerun with
the same inputs, batch layout and thread count on the same machine; BLAS gives no bitwise
guarantee across batch layouts or thread counts, so other comparisons of float32 results
use the tolerances below, derived from float32's ``eps``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import least_squares
from torch.testing import assert_close

from huberkl.distributions import sample
from huberkl.errors import InputError
from huberkl.toy import reference, solvers
from huberkl.toy.data import legendre_basis, make_seed_data

THETA = [6, -3, -25, 15, 20, -10]
EPS32 = torch.finfo(torch.float32).eps


def f32_tolerances(n: int) -> tuple[float, float]:
    """(rtol of the objective, atol of θ per unit of the fit's largest |θ|) between two
    float32 solves of the same fits that add in different orders.

    Objective: both stop within ``ftol`` (relative) of the minimum, and each reports a
    float32 sum of N positive terms, whose rounding is at most about ``log2(N)·eps``
    relative for blocked/pairwise summation; twice that, for the two solves, plus ftol.
    θ: ``θ = start + α·φ`` is rounded at the scale of its largest coefficient, and the
    minimiser moves with the residuals' rounding (conditioning of the Legendre design
    < 20): 64 ulps of max|θ|.
    """
    return solvers.default_ftol(torch.float32) + 2 * np.log2(n) * EPS32, 64 * EPS32


def assert_f32_close(a: solvers.ExactResult, b: solvers.ExactResult, n: int) -> None:
    rtol, atol = f32_tolerances(n)
    assert_close(a.loss, b.loss, rtol=rtol, atol=0)
    scale = 1 + torch.maximum(a.theta.abs().amax(-1), b.theta.abs().amax(-1))
    assert bool(((a.theta - b.theta).abs().amax(-1) <= atol * scale).all()), float(
        ((a.theta - b.theta).abs().amax(-1) / scale).max() / EPS32
    )


@pytest.fixture(autouse=True, params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Run the test with this many torch threads, then restore the count."""
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


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
    y = A @ rng.normal(scale=3.0, size=k) + sample(family, 1.0, n, rng)
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
    r = (d.Y[rows] - res.theta @ design.At[0]) / alpha[:, None]
    g = r.clamp(-1, 1) @ design.A[0]  # minus the gradient of Σ H_1(r/α), in units of α
    scale = r.clamp(-1, 1).abs() @ design.A[0].abs()  # size of the terms that cancel
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
    # and the α with the lowest float32 test RMSE of every label row is as good as float64's
    # best within that tolerance (not the same index: two α whose RMSEs differ by less than
    # float32 can resolve may swap places on another CPU or BLAS code path)
    best32 = d32.test_rmse(r32.theta).view(-1, 13).argmin(1)
    rmse64 = d64.test_rmse(r64.theta).view(-1, 13)
    picked = rmse64.gather(1, best32[:, None])[:, 0]
    assert bool((picked <= rmse64.amin(1) * (1 + 2e-3)).all())


def test_same_inputs_layout_and_threads_give_the_same_bits():
    d, design, rows, alpha = _toy(torch.float32)
    a = solvers.solve_exact(design, d.Y, alpha, rows)
    b = solvers.solve_exact(design, d.Y, alpha, rows)
    assert torch.equal(a.theta, b.theta) and torch.equal(a.loss, b.loss)


def test_permuted_fits_agree_within_float32_rounding():
    """Another order of the fits is another batch layout: not bitwise, within rounding."""
    d, design, rows, alpha = _toy(torch.float32)
    a = solvers.solve_exact(design, d.Y, alpha, rows)
    perm = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))
    c = solvers.solve_exact(design, d.Y, alpha[perm], rows[perm])
    assert bool(c.converged.all())
    picked = solvers.ExactResult(*(t[perm] for t in (a.theta, a.loss, a.gap, a.iters, a.converged)))
    assert_f32_close(c, picked, design.n)


def _seeds(dtype, seeds=(0, 1, 2), n=2000):
    datas = [
        make_seed_data(
            ["laplace", "cauchy"], [0.5, 2.0], s, n=n, k=8, delta=2.0, theta=THETA,
            n_test=500, dtype=dtype,
        )
        for s in seeds
    ]  # fmt: skip
    alphas = np.geomspace(0.02, 20, 9)
    rows = torch.arange(4).repeat_interleave(len(alphas))
    alpha = torch.as_tensor(np.tile(alphas, 4), dtype=dtype)
    return datas, rows, alpha


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seed_batched_solver_equals_one_seed_at_a_time(dtype):
    """One call over several seeds, each on its own x, gives every seed's own answer."""
    datas, rows, alpha = _seeds(dtype)
    design = solvers.Design.from_matrix(torch.stack([d.A for d in datas]))
    assert design.seeds == 3 and not torch.equal(design.A[0], design.A[1])  # own x per seed
    batched = solvers.solve_exact(design, torch.stack([d.Y for d in datas]), alpha, rows)
    assert batched.theta.shape == (3, len(alpha), 8) and bool(batched.converged.all())
    for i, d in enumerate(datas):
        one = solvers.solve_exact(solvers.Design.from_matrix(d.A), d.Y, alpha, rows)
        got = solvers.ExactResult(
            *(t[i] for t in (batched.theta, batched.loss, batched.gap, batched.iters,
                             batched.converged))
        )  # fmt: skip
        if dtype == torch.float64:
            assert_close(got.loss, one.loss, rtol=1e-13, atol=0)
            assert_close(got.theta, one.theta, rtol=1e-9, atol=1e-9)
        else:
            assert_f32_close(got, one, design.n)


def test_fast_solver_matches_the_plain_reference():
    """The fast path (waves, warm starts, dropped rows, padded seed blocks, line-slope
    tests) against plain damped Newton (huberkl/toy/reference.py), both in float64."""
    datas, rows, alpha = _seeds(torch.float64, seeds=(3, 4), n=400)
    A = torch.stack([d.A for d in datas])
    Y = torch.stack([d.Y for d in datas])
    fast = solvers.solve_exact(solvers.Design.from_matrix(A), Y, alpha, rows)
    sid = torch.arange(2).repeat_interleave(len(alpha))
    theta, F = reference.reference_exact(A, Y, alpha.repeat(2), rows.repeat(2), sid)
    ok = fast.converged.reshape(-1)  # small N: a Cauchy fit at α = 0.02 may run out of steps
    assert int(ok.sum()) >= 0.9 * len(ok)
    assert bool((fast.loss.reshape(-1) >= F * (1 - 1e-12)).all())  # never below the minimum
    assert_close(fast.loss.reshape(-1)[ok], F[ok], rtol=1e-10, atol=0)
    assert_close(fast.theta.reshape(-1, 8)[ok], theta[ok], rtol=1e-6, atol=1e-6)


def test_fast_solver_matches_the_reference_on_its_rare_paths(monkeypatch):
    """α from 1e-2 to 20 on two seeds of N = 300: the paths the paper's grid rarely takes
    (line searches, singular Hessians and their fallback metric, dropped rows with padded
    seed blocks) are taken, counted here, and every fit that claims convergence equals
    plain damped Newton's minimum (float64); none is below it."""
    taken = {"backtrack": 0, "pack": 0, "fallback": 0}

    def counting(name, fn, count=lambda out: 1):
        def wrapped(*args, **kwargs):
            out = fn(*args, **kwargs)
            taken[name] += count(out)
            return out

        return wrapped

    monkeypatch.setattr(solvers, "_backtrack", counting("backtrack", solvers._backtrack))
    monkeypatch.setattr(
        solvers, "_pack", counting("pack", solvers._pack, lambda out: out is not None)
    )
    monkeypatch.setattr(
        solvers, "_factor", counting("fallback", solvers._factor, lambda out: int((~out[1]).sum()))
    )
    datas, rows, _ = _seeds(torch.float64, seeds=(5, 6), n=300)
    alpha = torch.as_tensor(np.tile(np.geomspace(1e-2, 20, 9), 4), dtype=torch.float64)
    A = torch.stack([d.A for d in datas])
    Y = torch.stack([d.Y for d in datas])
    fast = solvers.solve_exact(solvers.Design.from_matrix(A), Y, alpha, rows)
    assert all(v > 0 for v in taken.values()), taken
    sid = torch.arange(2).repeat_interleave(len(alpha))
    theta, F = reference.reference_exact(A, Y, alpha.repeat(2), rows.repeat(2), sid)
    ok = fast.converged.reshape(-1)  # a Cauchy fit at α <= 0.05 may run out of steps
    assert int(ok.sum()) >= 0.9 * len(ok)
    assert bool((fast.loss.reshape(-1) >= F * (1 - 1e-12)).all())
    assert_close(fast.loss.reshape(-1)[ok], F[ok], rtol=1e-10, atol=0)
    assert_close(fast.theta.reshape(-1, 8)[ok], theta[ok], rtol=1e-6, atol=1e-6)


def test_seed_mm_multiplies_each_row_by_its_own_seed():
    g = torch.Generator().manual_seed(0)
    mats = torch.randn(4, 6, 3, generator=g, dtype=torch.float64)
    X = torch.randn(11, 6, generator=g, dtype=torch.float64)
    sid = torch.tensor([3, 0, 3, 1, 1, 3, 0, 2, 3, 3, 1])
    want = torch.stack([X[r] @ mats[sid[r]] for r in range(len(X))])
    assert_close(solvers.seed_mm(X, sid, mats), want, rtol=1e-14, atol=1e-14)


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
        r = d.Y[rows] - t @ design.At[0]
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


# --------------------------------------------------------------------------- design rank
# Whether a design is refused must not depend on the BLAS/LAPACK code path (MKL's AVX-512
# Cholesky accepted the exactly singular float32 AᵀA of ones(3, 2)): ``make test-paths``
# runs these under MKL_CBWR=COMPATIBLE and ATEN_CPU_CAPABILITY=default too.

DTYPES = [torch.float32, torch.float64]


def _normal(n: int, k: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g, dtype=torch.float64).to(dtype)


def _singular(case: str, dtype: torch.dtype) -> torch.Tensor:
    if case == "ones":
        return torch.ones(3, 2, dtype=dtype)
    A = _normal(200, 4, torch.float64)
    if case == "duplicate":
        A[:, 3] = A[:, 1]
    elif case == "zero":
        A[:, 2] = 0
    elif case == "combination":
        A[:, 3] = 0.3 * A[:, 0] - 2.0 * A[:, 2]
    elif case == "near-duplicate":  # 1e-9 relative: singular in float32 and in float64
        A[:, 3] = A[:, 1] * (1 + 1e-9 * _normal(200, 1, torch.float64, seed=1)[:, 0])
    elif case == "near-duplicate-1e-4":  # cond(AᵀA) ~ 1e8 > 1/eps: numerically singular in float32
        A[:, 3] = A[:, 1] * (1 + 1e-4 * _normal(200, 1, torch.float64, seed=1)[:, 0])
    return A.to(dtype)


SINGULAR = [
    (case, dtype)
    for case in ("ones", "duplicate", "zero", "combination", "near-duplicate")
    for dtype in DTYPES
] + [("near-duplicate-1e-4", torch.float32)]


@pytest.mark.parametrize(
    ("case", "dtype"), SINGULAR, ids=[f"{c}-{str(d)[6:]}" for c, d in SINGULAR]
)
def test_rank_deficient_designs_are_refused(case, dtype):
    A = _singular(case, dtype)
    with pytest.raises(InputError) as err:
        solvers.Design.from_matrix(A)
    msg = str(err.value)
    assert "\n" not in msg and "linearly independent columns" in msg
    assert f"K={A.shape[1]}" in msg and ("zero column" in msg or str(dtype)[6:] in msg)
    # one bad seed in a stack is enough, and it is named
    stack = torch.stack([_normal(*A.shape, dtype, seed=2), A])
    with pytest.raises(InputError, match="seed 1"):
        solvers.Design.from_matrix(stack)


def test_near_duplicate_column_is_accepted_in_float64_only():
    A = _singular("near-duplicate-1e-4", torch.float64)
    assert solvers.Design.from_matrix(A).k == 4


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_rank_is_refused_even_where_cholesky_reports_success(monkeypatch, dtype):
    """The Xeon's failure: MKL's AVX-512 Cholesky of the singular float32 [[3, 3], [3, 3]]
    returned info 0 with L[1, 1] = 3.3e-4. The verdict must not hang on ``info``."""
    real = torch.linalg.cholesky_ex

    def says_success(H, **kwargs):
        eye = torch.eye(H.shape[-1], dtype=H.dtype)
        L, _ = real(H + 1e-7 * H.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None] * eye)
        return L, torch.zeros(H.shape[:-2], dtype=torch.int32)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", says_success)
    with pytest.raises(InputError, match="rank deficient"):
        solvers.Design.from_matrix(torch.ones(3, 2, dtype=dtype))


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_well_conditioned_designs_are_accepted(dtype):
    x = torch.from_numpy(np.random.default_rng(0).uniform(-2, 2, 10000))
    legendre = legendre_basis(x, 8, 2.0).to(dtype)  # the toy's design
    assert solvers.Design.from_matrix(legendre).k == 8
    assert solvers.Design.from_matrix(torch.stack([legendre, legendre.flip(0)])).seeds == 2
    for seed, (n, k) in enumerate([(1, 1), (2, 2), (8, 8), (50, 3), (300, 8), (10000, 12)]):
        A = _normal(n, k, dtype, seed)
        if n == k:  # a square random matrix may be ill-conditioned: make it diagonally dominant
            A = A + 3 * k**0.5 * torch.eye(k, dtype=dtype)
        assert solvers.Design.from_matrix(A).k == k
    # the scale of a column does not matter (Cholesky and Newton steps do not see it)
    scaled = _normal(300, 4, dtype) * torch.tensor([1e-3, 1.0, 1e3, 1e6], dtype=dtype)
    assert solvers.Design.from_matrix(scaled).k == 4


@pytest.mark.parametrize(
    ("A", "needle"),
    [
        (torch.ones(1, 2), "fewer rows than columns"),
        (torch.tensor([[1.0, float("nan")], [0.0, 1.0]]), "NaN or infinite"),
        (torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), "NaN or infinite"),
    ],
    ids=["N<K", "nan", "inf"],
)
def test_other_bad_designs_are_input_errors(A, needle):
    with pytest.raises(InputError, match=needle):
        solvers.Design.from_matrix(A)


@pytest.mark.parametrize("dtype", DTYPES, ids=["float32", "float64"])
def test_a_singular_hessian_is_never_the_true_one_whatever_cholesky_reports(monkeypatch, dtype):
    """Fewer than K points in the quadratic zone: the fallback metric on every code path,
    even where the factorisation of the singular Hessian reports success (MKL AVX-512)."""
    d = make_seed_data(
        ["laplace"], [1.0], 0, n=300, k=8, delta=2.0, theta=THETA, n_test=10, dtype=dtype
    )
    design = solvers.Design.from_matrix(d.A)
    blocks = solvers._Blocks.of(design, 3)
    u = torch.full((3, 300), 10.0, dtype=dtype)  # all outside ...
    u[1, :5] = 0.5  # ... but 5 < K points inside
    u[2] = 0.5  # all inside: the Gram matrix, well conditioned
    inside = (u.abs() <= 1).to(dtype)
    flat = blocks.mm(inside, blocks.products)
    H, count = design.unpack(flat), flat[:, -1]
    real = torch.linalg.cholesky_ex

    def says_success(M, **kwargs):
        eye = torch.eye(M.shape[-1], dtype=M.dtype)
        L, _ = real(M + 1e-7 * M.diagonal(dim1=-2, dim2=-1).amax(-1)[..., None, None] * eye)
        return L, torch.zeros(M.shape[:-2], dtype=torch.int32)

    for patched in (False, True):
        if patched:
            monkeypatch.setattr(torch.linalg, "cholesky_ex", says_success)
        L, exact = solvers._factor(design, blocks, H, u, count)
        assert exact.tolist() == [False, False, True], patched
        assert bool(torch.isfinite(L).all())
