"""huberkl.losses against independent oracles, the paper's identities and its bounds.

Oracles: torch.distributions (Eq. 15), torch.nn.functional (Eq. 4, smooth L1),
scipy.integrate.quad of ∫p·log(p/q), mpmath at 50 digits, autograd/gradcheck (Eq. 44,
45). ``test_oracles_reject_mutants`` runs the same oracle checks on deliberately wrong
formulas (α and β swapped, a missing factor 1/2, ...) to show that they can fail.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate
from torch.distributions import Laplace, kl_divergence
from torch.testing import assert_close

from huberkl import losses as L

F64 = torch.float64
EPS64 = torch.finfo(F64).eps
FAST = settings(max_examples=60, deadline=None, derandomize=True)
FLOAT_DTYPES = [torch.float32, torch.float64]
HALF_DTYPES = [torch.float16, torch.bfloat16]
# Tolerances for results computed in float32 and rounded to the half type.
HALF_TOL = {torch.float16: dict(rtol=2e-3, atol=1e-6), torch.bfloat16: dict(rtol=1e-2, atol=1e-6)}


def t64(values) -> torch.Tensor:
    return torch.as_tensor(values, dtype=F64)


def grid(alpha: float, n: int = 101) -> torch.Tensor:
    """Residuals across both regimes: |x| from 1e-6·α to 100·α, both signs, and 0."""
    mags = alpha * torch.logspace(-6, 2, n, dtype=F64)
    return torch.cat([-mags.flip(0), t64([0.0]), mags])


def mp_kl_loss(x: float, a: float, b: float) -> mpmath.mpf:
    x, a, b = mpmath.mpf(x), mpmath.mpf(a), mpmath.mpf(b)
    return (a * mpmath.exp(-abs(x) / a) + abs(x) - a) / b


def log_ratio_term(alpha, beta) -> torch.Tensor:
    """r − 1 − log r with r = α/β: KL(Laplace(x,α)‖Laplace(0,β)) − D_{α,β}(x) (Eq. 15, 16)."""
    r = t64(alpha) / t64(beta)
    return r - 1 - torch.log(r)


# --------------------------------------------------------------------------- oracles
# Each returns the largest relative error of an implementation against an independent
# reference; the tests assert it is tiny for huberkl and large for the mutants.


def kl_oracle_error(kl_loss) -> float:
    """D_{α,β}(x) = KL(Laplace(x,α) ‖ Laplace(0,β)) − (r − 1 − log r), with α ≠ β."""
    worst = 0.0
    for alpha, beta in [(0.3, 2.0), (2.0, 0.3), (1.0, 1.0), (5.0, 0.7)]:
        x = grid(alpha, 41)
        ref = kl_divergence(Laplace(x, t64(alpha)), Laplace(torch.zeros_like(x), t64(beta)))
        ref = ref - log_ratio_term(alpha, beta)
        got = kl_loss(x, alpha, beta)
        scale = ref.abs().clamp_min(1e-300)
        # Tiny residuals lose their digits in torch's naive formula: compare where it holds 8.
        ok = ref.abs() > 1e-8 * (1 + x.abs() / beta)
        worst = max(worst, float(((got - ref).abs() / scale)[ok].max()))
    return worst


def huber_oracle_error(huber) -> float:
    worst = 0.0
    for alpha in (0.1, 1.0, 7.5):
        x = grid(alpha, 41)
        ref = F.huber_loss(x, torch.zeros_like(x), reduction="none", delta=alpha)
        got = huber(x, alpha)
        worst = max(worst, float(((got - ref).abs() / ref.abs().clamp_min(1e-300)).max()))
    return worst


# --------------------------------------------------------------------------- oracles hold


def test_kl_loss_matches_torch_laplace_kl_with_beta_only_terms_removed():
    assert kl_oracle_error(L.kl_loss) < 1e-7  # bound set by torch's naive formula, not ours


@pytest.mark.parametrize("b1,b2", [(0.3, 2.0), (2.0, 0.3), (1.0, 1.0), (1e-3, 50.0)])
def test_laplace_kl_matches_torch_distributions(b1, b2):
    gen = torch.Generator().manual_seed(0)
    mu1 = torch.randn(64, generator=gen, dtype=F64) * 3
    mu2 = torch.randn(64, generator=gen, dtype=F64)
    ref = kl_divergence(Laplace(mu1, t64(b1)), Laplace(mu2, t64(b2)))
    assert_close(L.laplace_kl(mu1, b1, mu2, b2), ref, rtol=1e-12, atol=1e-12)


def test_laplace_kl_accepts_tensor_scales_per_coordinate():
    mu1, mu2 = t64([[0.0, 1.0, -2.0]]), t64([[0.5, 1.0, 3.0]])
    b1, b2 = t64([0.5, 1.0, 2.0]), t64([1.5, 0.25, 2.0])
    ref = kl_divergence(Laplace(mu1, b1), Laplace(mu2, b2))
    assert_close(L.laplace_kl(mu1, b1, mu2, b2), ref, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_huber_matches_torch_huber_loss(dtype):
    for alpha in (1 / 9, 0.5, 1.0, 3.0):
        x = grid(alpha).to(dtype)
        ref = F.huber_loss(x, torch.zeros_like(x), reduction="none", delta=alpha)
        assert_close(L.huber(x, alpha), ref)
    assert huber_oracle_error(L.huber) < 1e-14


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("beta", [0.0, 1 / 9, 1.0, 2.5])
def test_smooth_l1_matches_torch(dtype, beta):
    x = grid(max(beta, 1.0)).to(dtype)
    ref = F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none", beta=beta)
    assert_close(L.smooth_l1(x, beta), ref)
    if beta > 0:  # the frameworks' form is (1/β)·H_β (docs/EQUATIONS.md)
        assert_close(L.smooth_l1(x, beta), L.huber(x, beta) / beta)


def _quad_kl(mu1: float, b1: float, mu2: float, b2: float) -> float:
    """∫ p log(p/q) dx for p = Laplace(µ1,b1), q = Laplace(µ2,b2), split at the kinks."""

    def integrand(x: float) -> float:
        log_p = -abs(x - mu1) / b1 - math.log(2 * b1)
        log_q = -abs(x - mu2) / b2 - math.log(2 * b2)
        return math.exp(log_p) * (log_p - log_q)

    lo, hi = sorted((mu1, mu2))
    width = 60 * max(b1, b2)
    pieces = [
        (-math.inf, lo - width),
        (lo - width, lo),
        (lo, hi),
        (hi, hi + width),
        (hi + width, math.inf),
    ]
    total = 0.0
    for a, b in pieces:
        if a < b:
            total += integrate.quad(integrand, a, b, epsabs=1e-14, epsrel=1e-12, limit=200)[0]
    return total


@pytest.mark.parametrize(
    "mu1,b1,mu2,b2",
    [(0.7, 1.0, 0.0, 1.0), (-2.0, 0.5, 1.0, 2.0), (3.0, 2.0, 0.0, 0.4), (0.0, 1.0, 0.0, 3.0)],
)
def test_laplace_kl_matches_quadrature_of_the_kl_integral(mu1, b1, mu2, b2):
    got = L.laplace_kl(t64(mu1), b1, t64(mu2), b2)
    assert_close(got, t64(_quad_kl(mu1, b1, mu2, b2)), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("x,alpha", [(0.3, 1.0), (-2.5, 0.5), (4.0, 2.0), (1e-3, 0.2)])
def test_kl_loss_with_equal_scales_is_the_kl_integral(x, alpha):
    """D_{α,α}(x) = KL(Laplace(x,α) ‖ Laplace(0,α)) (Eq. 15, 16 with b1 = b2 = α = β)."""
    ref = t64(_quad_kl(x, alpha, 0.0, alpha))
    assert_close(L.kl_loss(t64(x), alpha, alpha), ref, rtol=1e-9, atol=1e-13)
    assert_close(L.laplace_kl(t64(x), alpha, t64(0.0), alpha), ref, rtol=1e-9, atol=1e-13)


# --------------------------------------------------------------------------- mutants fail


def _swapped(x, alpha, beta):
    return L.kl_loss(x, beta, alpha)


def _no_beta(x, alpha, beta):
    return L.kl_loss(x, alpha, 1.0)


def _half_alpha(x, alpha, beta):
    return L.kl_loss(x, alpha / 2, beta)


def _huber_no_half(x, alpha):
    c = x.clamp(-alpha, alpha)
    return c * c + alpha * (x.abs() - c.abs())


def _huber_is_smooth_l1(x, alpha):
    return L.smooth_l1(x, alpha)


@pytest.mark.parametrize("mutant", [_swapped, _no_beta, _half_alpha])
def test_kl_oracle_rejects_mutants(mutant):
    assert kl_oracle_error(mutant) > 1e-2


@pytest.mark.parametrize("mutant", [_huber_no_half, _huber_is_smooth_l1])
def test_huber_oracle_rejects_mutants(mutant):
    assert huber_oracle_error(mutant) > 1e-2


def test_bound_check_rejects_swapped_bounds():
    x = grid(1.0)
    h = L.huber(x, 1.0)
    assert bool((L.huber_upper_bound(x, 1.0) > h * (1 + 1e-9)).any())
    assert bool((L.huber_lower_bound(x, 1.0) < h * (1 - 1e-9)).any())


# --------------------------------------------------------------------------- derivatives


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.3, 2.0), (4.0, 0.25)])
def test_analytic_derivatives_match_autograd(alpha, beta):
    x = grid(alpha).requires_grad_(True)
    (g,) = torch.autograd.grad(L.kl_loss(x, alpha, beta).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert_close(L.kl_loss_grad(x.detach(), alpha, beta), g.detach(), rtol=1e-13, atol=1e-15)
    assert_close(L.kl_loss_hess(x.detach(), alpha, beta), h, rtol=1e-12, atol=1e-15)
    # and the closed forms of Eq. 44, 45 themselves
    xd = x.detach()
    assert_close(g.detach(), torch.sign(xd) * (1 - torch.exp(-xd.abs() / alpha)) / beta)
    assert_close(h, torch.exp(-xd.abs() / alpha) / (alpha * beta))


@pytest.mark.parametrize("as_tensor", [False, True])
@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.3, 2.0), (1e-6, 5.0)])
def test_second_derivative_at_zero_is_one_over_alpha_beta(alpha, beta, as_tensor):
    """Appendix B: D'' exists at 0 and equals 1/(αβ); autograd must agree (not 0)."""
    x = torch.zeros(1, dtype=F64, requires_grad=True)
    a, b = (t64([alpha]), t64([beta])) if as_tensor else (alpha, beta)
    (g,) = torch.autograd.grad(L.kl_loss(x, a, b).sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    assert_close(g.detach(), t64([0.0]))
    assert_close(h, t64([1 / (alpha * beta)]))
    assert_close(L.kl_loss_hess(x.detach(), alpha, beta), t64([1 / (alpha * beta)]))


def test_huber_gradient_is_the_clamp():
    x = grid(0.7).requires_grad_(True)
    (g,) = torch.autograd.grad(L.huber(x, 0.7).sum(), x)
    assert_close(g, x.detach().clamp(-0.7, 0.7))


def _avoid(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """Move points away from |x| = α, where H_α has no second derivative."""
    return torch.where((x.abs() - alpha).abs() < 1e-3, x + 0.01, x)


def test_gradcheck_kl_loss_wrt_x_alpha_beta():
    x = t64([-3.0, -0.4, 0.0, 1e-4, 0.2, 0.9, 2.0, 50.0]).requires_grad_(True)
    alpha = t64([0.7]).requires_grad_(True)
    beta = t64([1.3]).requires_grad_(True)
    assert torch.autograd.gradcheck(L.kl_loss, (x, alpha, beta))
    assert torch.autograd.gradgradcheck(L.kl_loss, (x, alpha, beta))


def test_gradcheck_kl_loss_per_coordinate_parameters():
    x = t64([[-2.0, 0.1, 0.5, 0.0], [1.0, -0.05, 3.0, 0.4]]).requires_grad_(True)
    alpha = t64([0.5, 1.0, 0.2, 2.0]).requires_grad_(True)
    beta = t64([1.0, 0.3, 2.0, 0.7]).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda *a: L.kl_loss(*a, reduction="sum"), (x, alpha, beta))
    assert torch.autograd.gradgradcheck(L.kl_loss, (x, alpha, beta))


def test_gradcheck_huber_wrt_x_and_alpha():
    x = _avoid(t64([-3.0, -0.4, 0.0, 0.2, 1.5, 2.0]), 0.8).requires_grad_(True)
    alpha = t64([0.8]).requires_grad_(True)
    assert torch.autograd.gradcheck(L.huber, (x, alpha))
    assert torch.autograd.gradgradcheck(L.huber, (x, alpha))


def test_gradcheck_laplace_kl_wrt_all_arguments():
    mu1 = t64([0.0, 1.0, -2.0, 0.3]).requires_grad_(True)
    mu2 = t64([0.5, 1.0, 1.0, 0.3001]).requires_grad_(True)
    for b1, b2 in [(0.5, 2.0), (1.0, 1.02), (1.0, 1.0)]:  # far from, near and at r = 1
        p = t64([b1]).requires_grad_(True)
        q = t64([b2]).requires_grad_(True)
        assert torch.autograd.gradcheck(L.laplace_kl, (mu1, p, mu2, q))
        assert torch.autograd.gradgradcheck(L.laplace_kl, (mu1, p, mu2, q))


def test_gradient_wrt_alpha_matches_closed_form():
    """∂D/∂α = (e^{−u}(1 + u) − 1)/β, u = |x|/α: checks the α-path of every branch."""
    alpha = t64(0.6).requires_grad_(True)
    x = grid(0.6)
    (ga,) = torch.autograd.grad(L.kl_loss(x, alpha, 2.0).sum(), alpha)
    u = x.abs() / 0.6
    assert_close(ga, ((torch.exp(-u) * (1 + u) - 1) / 2.0).sum(), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- approximations


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.2, 3.0), (5.0, 0.5)])
def test_second_order_approximation_error_is_cubic(alpha, beta):
    """Eq. 17: D ≈ x²/(2αβ) near 0 with error −|x|³/(6α²β) + O(x⁴)."""
    x = alpha * t64([1e-1, 1e-2, 1e-3, 1e-4])
    err = L.kl_loss(x, alpha, beta) - x**2 / (2 * alpha * beta)
    assert_close(
        err / x.abs() ** 3, torch.full_like(x, -1 / (6 * alpha**2 * beta)), rtol=0.04, atol=0
    )
    assert_close(err[-1] / x[-1] ** 3, t64(-1 / (6 * alpha**2 * beta)), rtol=1e-4, atol=0)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (0.2, 3.0)])
def test_large_residual_asymptote(alpha, beta):
    """Eq. 18: D − (|x| − α)/β = α·e^{−|x|/α}/β → 0."""
    x = alpha * t64([-200.0, -40.0, 10.0, 20.0, 1e6])
    gap = L.kl_loss(x, alpha, beta) - (x.abs() - alpha) / beta
    ref = alpha * torch.exp(-x.abs() / alpha) / beta
    assert_close(gap, ref, rtol=1e-6, atol=1e-12 * float(x.abs().max()) / beta)
    assert_close(
        L.kl_loss(x[2:4], alpha, beta),
        (x[2:4].abs() - alpha + alpha * torch.exp(-x[2:4].abs() / alpha)) / beta,
        rtol=1e-15,
        atol=0,
    )


@pytest.mark.parametrize("beta", [1.0, 0.1])
def test_alpha_to_zero_gives_l1_over_beta(beta):
    x = t64([-5.0, -1e-3, 0.0, 1e-6, 2.0, 1e30])
    for alpha in (1e-12, 1e-100, 1e-300):
        assert_close(L.kl_loss(x, alpha, beta), x.abs() / beta, rtol=1e-6, atol=2 * alpha / beta)
    assert_close(L.kl_loss(x, 1e-100, beta), x.abs() / beta, rtol=1e-15, atol=1e-99)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_extreme_inputs_are_finite_in_value_and_gradient(dtype):
    x = torch.tensor(
        [-1e30, -1.0, -1e-20, 0.0, 1e-12, 3e-12, 1.0, 1e30], dtype=dtype
    ).requires_grad_(True)
    for alpha_value in (1e-12, 1.0, 1e3):  # H_α(1e30) overflows float32 for α ≥ 1e9
        alpha = torch.tensor(alpha_value, dtype=dtype, requires_grad=True)
        beta = torch.tensor(1.0, dtype=dtype, requires_grad=True)
        outputs = {
            "kl_loss": L.kl_loss(x, alpha, beta),
            "huber": L.huber(x, alpha),
            "lower": L.huber_lower_bound(x, alpha),
            "upper": L.huber_upper_bound(x, alpha),
            "laplace_kl": L.laplace_kl(x, alpha, torch.zeros_like(x), beta),
            "smooth_l1": L.smooth_l1(x, alpha),
        }
        for name, y in outputs.items():
            assert torch.isfinite(y).all(), (name, alpha_value, y)
            uses_beta = name in ("kl_loss", "laplace_kl")
            inputs = (x, alpha, beta) if uses_beta else (x, alpha)
            grads = torch.autograd.grad(y.sum(), inputs)
            for g in grads:
                assert torch.isfinite(g).all(), (name, alpha_value, grads)
        for fn in (L.kl_loss_grad, L.kl_loss_hess):
            assert torch.isfinite(fn(x.detach(), alpha_value, 1.0)).all()
        # far from 0 the value is (|x| − α)/β to the precision of the dtype
        big = x.detach()[[0, -1]]
        assert_close(L.kl_loss(big, alpha_value, 1.0), big.abs() - alpha_value)


@pytest.mark.parametrize("alpha,beta", [(1e-12, 1.0), (0.1, 10.0), (1.0, 1.0), (10.0, 0.1)])
def test_float32_is_float64_rounded(alpha, beta):
    """float32 keeps its ~1e-7 relative precision everywhere, down to x = 1e-6·α."""
    x64 = grid(alpha).to(torch.float32).to(F64)  # the same inputs in both dtypes
    x32 = x64.to(torch.float32)
    tol = dict(rtol=4e-7, atol=0.0)
    # The closed form α·expm1(−u) + |x| (u >= 1) adds terms of size α and |x|: the 1-ulp
    # error of float32 expm1 (MKL VML, SLEEF or libm by CPU and build) is 2 eps of those.
    eps32 = torch.finfo(torch.float32).eps
    terms = torch.where(x64.abs() >= alpha, (x64.abs() + alpha) / beta, 0.0)

    def close(got: torch.Tensor, ref: torch.Tensor) -> None:
        err = (got.to(F64) - ref).abs()
        assert bool((err <= 4e-7 * ref.abs() + 2 * eps32 * terms).all()), float(
            (err / ref.abs().clamp_min(1e-300)).max() / eps32
        )

    close(L.kl_loss(x32, alpha, beta), L.kl_loss(x64, alpha, beta))
    assert_close(L.kl_loss_grad(x32, alpha, beta).to(F64), L.kl_loss_grad(x64, alpha, beta), **tol)
    # e^{−u}, u = |x|/α, has condition number u, and is subnormal in float32 beyond u ≈ 87:
    # allow (2 + u) roundings, and an absolute error far below the peak 1/(αβ).
    got, ref = L.kl_loss_hess(x32, alpha, beta).to(F64), L.kl_loss_hess(x64, alpha, beta)
    u = x64.abs() / alpha
    scaled = (got - ref).abs() / (ref.abs() * (2 + u) + 1e-30 / (alpha * beta))
    assert float(scaled.max()) <= 2**-23, float(scaled.max())
    z32, z64 = torch.zeros_like(x32), torch.zeros_like(x64)
    close(L.laplace_kl(x32, alpha, z32, beta), L.laplace_kl(x64, alpha, z64, beta))


def test_float32_far_apart_scales_in_laplace_kl_stay_finite():
    """r = b1/b2 rounds to 0 in float32: log r must come from log b1 − log b2."""
    got = L.laplace_kl(torch.zeros(1), 1e-30, torch.zeros(1), 1e10)
    ref = 1e-40 - 1 - (math.log(1e-30) - math.log(1e10))
    assert_close(got, torch.tensor([ref], dtype=torch.float32))


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_precision_is_float64_rounded(dtype):
    for alpha, beta in [(0.1, 10.0), (1.0, 1.0), (10.0, 0.1)]:
        x = grid(alpha, 31).to(dtype)
        x64 = x.to(F64)
        xr = x.clone().requires_grad_(True)
        y = L.kl_loss(xr, alpha, beta)
        assert y.dtype == dtype
        ref = L.kl_loss(x64, alpha, beta)
        assert_close(y.to(F64), ref, **HALF_TOL[dtype])
        (g,) = torch.autograd.grad(y.sum(), xr)
        assert_close(g.to(F64), L.kl_loss_grad(x64, alpha, beta), **HALF_TOL[dtype])
        assert_close(L.huber(x, alpha).to(F64), L.huber(x64, alpha), **HALF_TOL[dtype])
        assert_close(
            L.laplace_kl(x, alpha, torch.zeros_like(x), beta).to(F64),
            L.laplace_kl(x64, alpha, torch.zeros_like(x64), beta),
            **HALF_TOL[dtype],
        )


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (1e-12, 3.0), (250.0, 0.01)])
def test_near_zero_precision_against_mpmath(alpha, beta):
    """A few ulps of the value, on any code path: torch's exp/expm1 come from MKL VML, SLEEF
    or libm depending on the CPU and build, each within 1 ulp but not the same ulp. The
    series (u < 1) loses nothing to cancellation: 4 eps of the value. The closed form
    α·expm1(−u) + |x| (u >= 1) adds terms of size α and |x|, and an ulp of expm1 is an ulp
    of them: 2 eps of (|x| + α)/β more. The gradient −sgn·expm1(−u)/β: 3 eps."""
    mpmath.mp.dps = 50
    for ratio in (1e-8, 1e-4, 0.5, 0.999999, 1.0, 1.000001, 7.0, 59.9, 60.1):
        x = ratio * alpha
        got = float(L.kl_loss(t64(x), alpha, beta))
        ref = mp_kl_loss(x, alpha, beta)
        terms = (abs(x) + alpha) / beta if ratio >= 1 else 0.0
        assert abs(got - ref) <= 4 * EPS64 * abs(ref) + 2 * EPS64 * terms, (ratio, got, ref)
        g = float(L.kl_loss_grad(t64(x), alpha, beta))
        g_ref = -mpmath.expm1(-mpmath.mpf(x) / alpha) / beta
        assert abs(g - g_ref) <= 3 * EPS64 * abs(g_ref), (ratio, g, g_ref)


def test_laplace_kl_near_equal_scales_against_mpmath():
    mpmath.mp.dps = 50
    for b1, b2, d in [
        (1.0 + 1e-9, 1.0, 0.0),
        (1.0, 1.0 - 1e-7, 1e-8),
        (2.0, 1.9, 0.3),
        (1.0, 3.0, 0.0),
    ]:
        got = float(L.laplace_kl(t64(d), b1, t64(0.0), b2))
        m = [mpmath.mpf(v) for v in (b1, b2, d)]
        ref = (m[0] * mpmath.exp(-m[2] / m[0]) + m[2]) / m[1] + mpmath.log(m[1] / m[0]) - 1
        assert abs(got - ref) <= 1e-15 * abs(ref), (b1, b2, d, got, ref)


# --------------------------------------------------------------------------- Sec. 4.3 identities

positive = st.floats(1e-3, 1e3)
residual = st.floats(-1e3, 1e3)


@FAST
@given(x=residual, alpha=positive, beta=positive, gamma=positive)
def test_scaling_the_residual(x, alpha, beta, gamma):
    """D_{α,β}(γx) = D_{α/γ,β/γ}(x) (Sec. 4.3)."""
    lhs = L.kl_loss(t64(gamma * x), alpha, beta)
    rhs = L.kl_loss(t64(x), alpha / gamma, beta / gamma)
    assert_close(lhs, rhs, rtol=1e-12, atol=1e-300)


@FAST
@given(x=residual, alpha=positive, beta=positive, lam=positive)
def test_scaling_the_loss(x, alpha, beta, lam):
    """λ·D_{α,β}(x) = D_{α,β/λ}(x) (Sec. 4.3)."""
    assert_close(
        lam * L.kl_loss(t64(x), alpha, beta),
        L.kl_loss(t64(x), alpha, beta / lam),
        rtol=1e-13,
        atol=1e-300,
    )


# --------------------------------------------------------------------------- Eq. 20, Appendix C

EPS = 1e-13  # relative slack for rounding where bound and loss agree to all digits


@FAST
@given(x=st.floats(-1e4, 1e4), alpha=st.floats(1e-4, 1e4))
def test_huber_is_between_its_bounds(x, alpha):
    """D_{α,1/α} ≤ H_α ≤ D_{α/2,1/α} (Eq. 20)."""
    xt = t64([x])
    h = float(L.huber(xt, alpha))
    lo = float(L.huber_lower_bound(xt, alpha))
    hi = float(L.huber_upper_bound(xt, alpha))
    assert lo <= h * (1 + EPS), (lo, h)
    assert h <= hi * (1 + EPS), (h, hi)


def lower_bound_violation(alpha: float, alpha1: float) -> tuple[float, float]:
    """The x maximising (D_{α1,1/α}(x) − H_α(x))/H_α(x), and that relative excess."""
    x = alpha * torch.logspace(-6, 2, 801, dtype=F64)
    h = L.huber(x, alpha)
    excess = (L.kl_loss(x, alpha1, 1 / alpha) - h) / h
    i = int(excess.argmax())
    return float(x[i]), float(excess[i])


@FAST
@given(alpha=st.floats(1e-3, 1e3), frac=st.floats(0.501, 0.999))
def test_lower_bound_is_tight(alpha, frac):
    """Appendix C, Eq. 84: every α1 in (α/2, α) breaks D_{α1,1/α} ≤ H_α at some x."""
    x, excess = lower_bound_violation(alpha, frac * alpha)
    assert excess > 1e-4, (x, excess)
    assert float(L.kl_loss(t64(x), frac * alpha, 1 / alpha)) > float(L.huber(t64(x), alpha))


def test_lower_bound_itself_has_no_violation():
    """The search above finds nothing for α1 = α: it only reports real violations."""
    for alpha in (1e-3, 1.0, 1e3):
        x, excess = lower_bound_violation(alpha, alpha)
        assert excess <= EPS, (alpha, x, excess)


@FAST
@given(alpha=st.floats(1e-3, 1e3), frac=st.floats(0.501, 1.0))
def test_upper_bound_is_tight(alpha, frac):
    """Eq. 83: α2 in (α/2, α] with β = 1/α ends up below H_α for large x (gap α(α/2 − α2))."""
    x = t64([1e3 * alpha])
    gap = L.kl_loss(x, frac * alpha, 1 / alpha) - L.huber(x, alpha)
    assert_close(gap, t64([alpha * (alpha / 2 - frac * alpha)]), rtol=1e-9, atol=1e-9 * alpha**2)
    assert float(gap) < 0


@pytest.mark.parametrize("alpha", [1e-3, 0.5, 1.0, 10.0, 1e3])
def test_bound_gaps_at_infinity(alpha):
    """Eq. 81, 82: D_{α/2,1/α} − H_α → 0 and D_{α,1/α} − H_α → −α²/2."""
    x = alpha * t64([40.0, 100.0, 1e4])
    h = L.huber(x, alpha)
    upper_gap = L.huber_upper_bound(x, alpha) - h
    lower_gap = L.huber_lower_bound(x, alpha) - h
    resolution = 4e-16 * float(h.max())
    assert_close(upper_gap, torch.zeros_like(x), rtol=0, atol=resolution)
    assert_close(lower_gap, torch.full_like(x, -(alpha**2) / 2), rtol=1e-9, atol=resolution)


# --------------------------------------------------------------------------- API


def test_reductions():
    x = grid(1.0, 11)
    none = L.kl_loss(x, 1.0, 2.0, reduction="none")
    assert none.shape == x.shape
    assert_close(L.kl_loss(x, 1.0, 2.0, reduction="mean"), none.mean())
    assert_close(L.kl_loss(x, 1.0, 2.0, reduction="sum"), none.sum())
    assert_close(L.huber(x, 1.0, "sum"), F.huber_loss(x, torch.zeros_like(x), reduction="sum"))
    assert_close(L.huber(x, 1.0, "mean"), F.huber_loss(x, torch.zeros_like(x), reduction="mean"))
    assert_close(L.laplace_kl(x, 1.0, 0 * x, 2.0, "mean"), L.laplace_kl(x, 1.0, 0 * x, 2.0).mean())
    for fn in (lambda r: L.kl_loss(x, 1.0, 1.0, r), lambda r: L.huber(x, 1.0, r)):
        with pytest.raises(ValueError, match="reduction"):
            fn("avg")


def test_per_coordinate_parameters_broadcast():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(5, 4, generator=gen, dtype=F64)  # (N, 4) box deltas
    alpha = t64([0.1, 0.5, 1.0, 2.0])
    beta = t64([1.0, 2.0, 0.5, 0.25])
    got = L.kl_loss(x, alpha, beta)
    assert got.shape == (5, 4)
    for j in range(4):
        assert_close(got[:, j], L.kl_loss(x[:, j], float(alpha[j]), float(beta[j])))
        assert_close(L.huber(x, alpha)[:, j], L.huber(x[:, j], float(alpha[j])))
    # the gradient w.r.t. a per-coordinate α has α's shape
    a = alpha.clone().requires_grad_(True)
    (ga,) = torch.autograd.grad(L.kl_loss(x, a, beta, "sum"), a)
    assert ga.shape == (4,)


def test_numbers_fractions_and_numpy_are_accepted():
    x = t64([0.3, -2.0])
    ref = L.kl_loss(x, 1 / 9, 0.5)
    assert_close(L.kl_loss(x, Fraction(1, 9), np.float32(0.5)), ref, rtol=1e-7, atol=0)
    assert_close(L.kl_loss(x.numpy(), np.array(1 / 9), 0.5), ref)
    assert_close(L.kl_loss(0.3, 1 / 9, 0.5), ref[0].float())


def test_modules_match_functions():
    gen = torch.Generator().manual_seed(2)
    pred, target = (
        torch.randn(6, 4, generator=gen, dtype=F64),
        torch.randn(6, 4, generator=gen, dtype=F64),
    )
    assert_close(L.HuberLoss(0.5)(pred, target), L.huber(pred - target, 0.5, "mean"))
    assert_close(L.KLLoss(0.5)(pred, target), L.huber_lower_bound(pred - target, 0.5, "mean"))
    assert_close(L.KLLoss(0.5, 3.0, "sum")(pred, target), L.kl_loss(pred - target, 0.5, 3.0, "sum"))
    assert_close(L.LaplaceKL(0.5, 2.0)(pred, target), L.laplace_kl(target, 0.5, pred, 2.0, "mean"))
    # a per-coordinate α is a buffer: it follows .to() and the state dict
    module = L.KLLoss(torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert set(dict(module.named_buffers())) == {"alpha", "beta"}
    module = module.double()
    assert module.alpha.dtype == F64
    assert_close(module.beta, 1 / module.alpha)


BAD_VALUES = [0.0, -1.0, float("nan"), float("inf"), "1", None, True, torch.tensor([1.0, -2.0])]


@pytest.mark.parametrize("bad", BAD_VALUES, ids=repr)
@pytest.mark.parametrize(
    "name,call",
    [
        ("alpha", lambda v: L.huber(t64([1.0]), v)),
        ("alpha", lambda v: L.kl_loss(t64([1.0]), v, 1.0)),
        ("beta", lambda v: L.kl_loss(t64([1.0]), 1.0, v)),
        ("alpha", lambda v: L.kl_loss_grad(t64([1.0]), v, 1.0)),
        ("beta", lambda v: L.kl_loss_hess(t64([1.0]), 1.0, v)),
        ("alpha", lambda v: L.huber_lower_bound(t64([1.0]), v)),
        ("alpha", lambda v: L.huber_upper_bound(t64([1.0]), v)),
        ("b1", lambda v: L.laplace_kl(t64([1.0]), v, t64([0.0]), 1.0)),
        ("b2", lambda v: L.laplace_kl(t64([1.0]), 1.0, t64([0.0]), v)),
        ("alpha", lambda v: L.HuberLoss(v)),
        ("alpha", lambda v: L.KLLoss(v)),
        ("beta", lambda v: L.KLLoss(1.0, v if v is not None else -1.0)),
        ("b2", lambda v: L.LaplaceKL(1.0, v)),
    ],
)
def test_bad_parameters_raise_value_error_naming_them(name, call, bad):
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call(bad)


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "x"], ids=repr)
def test_smooth_l1_allows_beta_zero_only(bad):
    assert_close(L.smooth_l1(t64([-2.0]), 0.0), t64([2.0]))
    with pytest.raises(ValueError, match="^beta must"):
        L.smooth_l1(t64([1.0]), bad)


def test_bad_residual_raises_value_error_naming_it():
    with pytest.raises(ValueError, match="^x must"):
        L.kl_loss("abc", 1.0, 1.0)
    with pytest.raises(ValueError, match="^mu1 must"):
        L.laplace_kl("abc", 1.0, 0.0, 1.0)
