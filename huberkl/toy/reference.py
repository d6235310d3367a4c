"""A plain batched reference for the exact Huber fits, to hold the fast solver to in tests.

Damped Newton on ``F(θ) = Σ_i H_α(y_i − a_iᵀθ)`` (Eq. 4) in float64, every fit on its own
seed's design: Hessian ``Aᵀ diag(|r| ≤ α) A``, or the IRLS majoriser
``Aᵀ diag(min(1, α/|r|)) A`` where that is singular, and step halving until ``F`` falls.
No warm starts, no waves, no dropped rows, no line-slope tests: slow and obviously right.
"""

from __future__ import annotations

import torch
from torch import Tensor


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
    X, y = A[sid], Y[sid, rows]  # (B, N, K), (B, N)
    theta = torch.linalg.lstsq(X, y[..., None]).solution[..., 0]
    F = huber_objective(y - (X @ theta[..., None])[..., 0], alpha)
    for _ in range(iters):
        r = y - (X @ theta[..., None])[..., 0]
        g = (X * r.clamp(-alpha[:, None], alpha[:, None])[..., None]).sum(1)  # −∇F
        H = X.mT @ (X * (r.abs() <= alpha[:, None])[..., None])
        L, info = torch.linalg.cholesky_ex(H)
        w = (alpha[:, None] / r.abs().clamp_min(1e-300)).clamp(max=1)
        L_irls = torch.linalg.cholesky(X.mT @ (X * w[..., None]))
        L = torch.where((info != 0)[:, None, None], L_irls, L)
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
