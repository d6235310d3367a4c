"""A plain batched reference for the exact Huber fits, to hold the fast solver to in tests.

Damped Newton on ``F(θ) = Σ_i H_α(y_i − a_iᵀθ)`` (Eq. 4) in float64, every fit on its own
seed's design: Hessian ``H = Aᵀ diag(|r| ≤ α) A``; where that is singular (fewer than K
points with |r| ≤ α, an exact count, or a Cholesky pivot at rounding level), ``H`` plus
_DAMPING times the IRLS majoriser ``Aᵀ diag(min(1, α/|r|)) A`` (Levenberg–Marquardt
damping: positive definite, so the step is a descent direction); step halving until ``F``
falls.
No warm starts, no waves, no dropped rows, no line-slope tests: slow and obviously right.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Weight of the IRLS majoriser added to a singular Hessian. The plain majoriser (no H) needs
# over 1000 steps on some α = 0.01 fits of tests/toy/test_solvers.py; 1e-12 to 1e-4 all
# reach the minimum there within 70 steps, 1e-4 the fastest.
_DAMPING = 1e-4


def huber_objective(r: Tensor, alpha: Tensor) -> Tensor:
    """(B, N) residuals, (B,) α -> (B,) ``Σ H_α(r)`` with H_α(r) = r²/2 or α(|r| − α/2)."""
    a = alpha[:, None]
    return torch.where(r.abs() <= a, 0.5 * r**2, a * (r.abs() - 0.5 * a)).sum(-1)


def reference_exact(
    A: Tensor, Y: Tensor, alpha: Tensor, rows: Tensor, sid: Tensor, iters: int = 100
) -> tuple[Tensor, Tensor]:
    """Fit b uses design ``A[sid[b]]`` (S, N, K) and label row ``Y[sid[b], rows[b]]``
    (S, M, N) with transition ``alpha[b]``. Returns θ (B, K) and ``F(θ)`` (B,), float64."""
    A, Y, alpha = A.double(), Y.double(), alpha.double()
    eps = torch.finfo(torch.float64).eps
    X, y = A[sid], Y[sid, rows]  # (B, N, K), (B, N)
    theta = torch.linalg.lstsq(X, y[..., None]).solution[..., 0]
    F = huber_objective(y - (X @ theta[..., None])[..., 0], alpha)
    for _ in range(iters):
        r = y - (X @ theta[..., None])[..., 0]
        g = (X * r.clamp(-alpha[:, None], alpha[:, None])[..., None]).sum(1)  # −∇F
        inside = r.abs() <= alpha[:, None]
        H = X.mT @ (X * inside[..., None])
        L, info = torch.linalg.cholesky_ex(H)
        # singular: fewer than K points inside (an exact count: some LAPACK/MKL code paths
        # report success for a singular H), or a pivot at rounding level
        pivots = L.diagonal(dim1=-2, dim2=-1) ** 2
        tiny = (pivots <= H.shape[-1] * eps * H.diagonal(dim1=-2, dim2=-1)).any(-1)
        singular = (info != 0) | (inside.sum(-1) < H.shape[-1]) | tiny
        if bool(singular.any()):
            w = (alpha[:, None] / r.abs().clamp_min(1e-300)).clamp(max=1)
            damped = H + _DAMPING * (X.mT @ (X * w[..., None]))
            L = torch.where(singular[:, None, None], torch.linalg.cholesky(damped), L)
        d = torch.cholesky_solve(g[..., None], L)[..., 0]
        active = (g * d).sum(-1) > 1e-15 * F  # Newton decrement: not yet at the minimum
        if not bool(active.any()):
            break
        t = torch.ones_like(alpha)
        for _ in range(60):  # halve the step of the fits whose F did not fall
            new = huber_objective(y - (X @ (theta + t[:, None] * d)[..., None])[..., 0], alpha)
            worse = (new > F) & active
            if not bool(worse.any()):
                break
            t = torch.where(worse, 0.5 * t, t)
        keep = new <= F
        theta = torch.where(keep[:, None], theta + t[:, None] * d, theta)
        F = torch.where(keep, new, F)
    return theta, F
