"""Batched solvers for ``min_θ Σ_i H_α(y_i − a_iᵀθ)`` (Eq. 1 with the Huber loss, Eq. 4).

Many fits share one design ``A`` (N, K): fit b uses label row ``Y[rows[b]]`` and its own
α. Both solvers work in units of α: with ``u = (y − Aθ)/α`` the objective is
``α² Σ H_1(u)``, so the clamp is ``clamp(u, −1, 1)`` for every fit and float32 keeps its
relative precision at any α.

- :func:`solve_exact`: the exact minimiser of the convex objective by a semismooth Newton
  method (Hessian ``Aᵀ diag(|u| ≤ 1) A``, Armijo backtracking, a majorise-minimise step as
  the fallback that always descends). It stops when the Newton decrement predicts that
  the objective is within ``ftol`` (relative) of its minimum; because the objective is
  piecewise quadratic, one full Newton step from the right partition lands on the
  minimiser, so that test is met in a few iterations.
- :func:`solve_gd`: the paper's protocol, full-batch gradient descent on the mean Huber
  loss from θ = 0 with a fixed learning rate and number of steps.

Shapes are noted as (B, N): fits × points, (B, K): fits × coefficients.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

# Huber's proposal-2 constant: α0 = 1.345·σ̂ gives 95 % efficiency under Gaussian noise.
# Used only for the robust starting point shared by every α of one label row.
_START_ALPHA = 1.345
_MAD_TO_SIGMA = 1.4826
_BACKTRACKS = 20
# A step is kept when the line slope at its end is below the rounding level of that slope
# (``_ROUNDING·eps·‖Ad‖₁``) and below this fraction of the predicted decrease λ²: by
# convexity F then rose by at most that much; a step that lands on the minimiser has slope
# 0 up to rounding and must not be cut. No objective is evaluated for this.
_SLOPE_TOL = 1e-3
_ROUNDING = 8.0
# Finished rows are dropped from the batch once they are this fraction of it.
_COMPACT = 0.25
# Weight of the IRLS terms ``1/|u|`` of the points outside the quadratic zone in the
# fallback metric for a singular Hessian (0.1 beat 1 and 0.01 on random small-α problems).
_IRLS_WEIGHT = 0.1


def default_ftol(dtype: torch.dtype) -> float:
    """Relative objective accuracy the Newton decrement must reach, per dtype.

    Float32 test-RMSE digits are limited by the data, not by this: 1e-10 relative in the
    objective moves θ by about 1e-5 of the noise scale (see ``tests/test_toy_solvers.py``).
    """
    return 1e-10 if dtype == torch.float32 else 1e-15


@dataclass
class Design:
    """A shared design ``A`` (N, K) with what every Newton step reuses.

    ``products`` (N, K(K+1)/2) holds ``a_i a_iᵀ`` (upper triangle), so the Hessians of a
    whole batch are one matrix product ``D @ products`` (B, K(K+1)/2).
    """

    A: Tensor
    At: Tensor
    products: Tensor
    rows_ij: tuple[Tensor, Tensor]
    gram_chol: Tensor

    @classmethod
    def from_matrix(cls, A: Tensor) -> Design:
        n, k = A.shape
        iu, ju = torch.triu_indices(k, k, device=A.device)
        chol, info = torch.linalg.cholesky_ex(A.T @ A)
        if int(info) != 0:
            raise ValueError(
                f"design matrix is rank deficient (N={n}, K={k}); need K distinct points"
            )
        return cls(
            A=A, At=A.T.contiguous(), products=A[:, iu] * A[:, ju], rows_ij=(iu, ju), gram_chol=chol
        )

    @property
    def k(self) -> int:
        return self.A.shape[1]

    @property
    def n(self) -> int:
        return self.A.shape[0]

    def unpack(self, flat: Tensor) -> Tensor:
        """(B, K(K+1)/2) upper triangles -> (B, K, K) symmetric matrices."""
        iu, ju = self.rows_ij
        h = flat.new_zeros(flat.shape[0], self.k, self.k)
        h[:, iu, ju] = flat
        h[:, ju, iu] = flat
        return h

    def factor(self, H: Tensor, u: Tensor) -> tuple[Tensor, Tensor]:
        """Cholesky factors of (B, K, K) Hessians at scaled residuals ``u`` (B, N), and
        whether each is the true Hessian (only those may certify convergence).

        A singular Hessian (fewer than K points in the quadratic zone, i.e. α far below
        the noise) is replaced by ``Aᵀ diag(w) A`` with ``w = 1`` inside and
        ``_IRLS_WEIGHT/|u|`` outside: positive definite, and with weight 1 it is the IRLS
        majoriser (Huber's loss lies below that weighted quadratic), so its step descends.
        """
        L, info = torch.linalg.cholesky_ex(H)
        exact = info == 0
        singular = (~exact).nonzero().squeeze(1)
        if len(singular):
            w = u.index_select(0, singular).abs().clamp_min(1).reciprocal_()
            w = torch.where(w == 1, w, _IRLS_WEIGHT * w)
            L_w, info_w = torch.linalg.cholesky_ex(self.unpack(w @ self.products))
            L_w = torch.where((info_w != 0)[:, None, None], self.gram_chol.to(L.dtype), L_w)
            L = L.index_copy(0, singular, L_w)
        return L, exact

    def least_squares(self, Y: Tensor) -> Tensor:
        """(M, N) -> (M, K) ordinary least squares coefficients."""
        return torch.cholesky_solve((Y @ self.A).T, self.gram_chol).T

    def residuals(self, Y: Tensor, theta: Tensor, rows: Tensor | None = None) -> Tensor:
        """(M, N), (B, K) -> (B, N) ``Y[rows] − θ Aᵀ``."""
        base = Y if rows is None else Y.index_select(0, rows)
        return torch.addmm(base, theta, self.At, alpha=-1)


def huber_sum(u: Tensor, psi: Tensor | None = None) -> Tensor:
    """(B, N) -> (B,) ``Σ H_1(u)`` as ``Σ ψ·(u − ψ/2)`` with ``ψ = clamp(u, −1, 1)``."""
    if psi is None:
        psi = u.clamp(-1, 1)
    return (torch.add(u, psi, alpha=-0.5).mul_(psi)).sum(-1)


def objective(
    design: Design, Y: Tensor, theta: Tensor, alpha: Tensor, rows: Tensor | None = None
) -> Tensor:
    """(B,) ``Σ_i H_α(y_i − a_iᵀθ)`` computed afresh, returned in float64 (the sums run in
    the compute dtype: about 1e-7 relative in float32)."""
    u = design.residuals(Y, theta, rows).div_(alpha[:, None])
    return alpha.double() ** 2 * huber_sum(u).double()


@dataclass
class ExactResult:
    """Per fit: coefficients θ (B, K), objective Σ H_α (float64), the Newton decrement
    λ²/2 relative to the objective (the predicted remaining relative gap), iterations, and
    whether the convergence test was met within ``max_iter``."""

    theta: Tensor
    loss: Tensor
    gap: Tensor
    iters: Tensor
    converged: Tensor


def _derivatives(design: Design, u: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(B, N) scaled residuals -> ``g = Aᵀψ`` (B, K), Hessians (B, K, K), ``Σ H_1(u)`` (B,)."""
    psi = u.clamp(-1, 1)
    inside = torch.eq(psi, u).to(u.dtype)
    return psi @ design.A, design.unpack(inside @ design.products), huber_sum(u, psi)


def _sorted_derivatives(
    design: Design, r0: Tensor, alpha: Tensor, row: Tensor, rows_per_pass: int = 16
) -> tuple[Tensor, Tensor, Tensor]:
    """Derivatives at the start of every fit from one pass over its label row.

    All α of a label row share its starting residuals ``r0`` (M, N). With that row's α
    sorted, point i is in the quadratic zone of exactly the fits whose α is at least
    ``|r_i|``, i.e. of the fits ranked at or above ``s_i = #{α < |r_i|}``. So one
    scatter-add of the per-point terms into the segments ``s_i`` followed by a cumulative
    sum over the (few) segments gives ``g = Aᵀψ``, the Hessian ``Aᵀ diag(|u| <= 1) A`` and
    ``Σ H_α(r)/α²`` of every fit of the row: cost O(M·N) instead of O(B·N). Sums run in
    float64.
    """
    n, k = design.n, design.k
    p = design.products.shape[1]
    acc = torch.float64
    g = alpha.new_zeros(len(alpha), k, dtype=acc)
    flat = alpha.new_zeros(len(alpha), p, dtype=acc)
    F = alpha.new_zeros(len(alpha), dtype=acc)
    A = design.A.to(acc)
    products1 = torch.cat([design.products.to(acc), A.new_ones(n, 1)], dim=1)  # a_i a_iᵀ and 1
    for lo in range(0, r0.shape[0], rows_per_pass):  # memory: rows_per_pass·N·(P + 2K + 3)
        hi = min(lo + rows_per_pass, r0.shape[0])
        fits = ((row >= lo) & (row < hi)).nonzero().squeeze(1)
        if len(fits) == 0:
            continue
        m, j, a = hi - lo, row[fits] - lo, alpha[fits]
        # rank of each fit among the α of its row, and a padded (m, L) table of sorted α
        by_alpha = torch.argsort(a, stable=True)
        order = by_alpha[torch.argsort(j[by_alpha], stable=True)]
        counts = torch.bincount(j, minlength=m)
        first = torch.cumsum(counts, 0) - counts
        rank = torch.empty_like(j)
        rank[order] = torch.arange(len(j), device=j.device) - first[j[order]]
        width = int(counts.max())
        table = a.new_full((m, width), float("inf"))
        table[j, rank] = a
        r = r0[lo:hi]
        seg = torch.searchsorted(table, r.abs().contiguous())  # (m, N): #{α < |r_i|}
        r = r.to(acc)
        terms = torch.cat(
            [r[..., None] * A, torch.sign(r)[..., None] * A, (r**2)[..., None], r.abs()[..., None]],
            dim=2,
        )  # (m, N, 2K + 2)
        sums = terms.new_zeros(m * (width + 1), terms.shape[2])
        base = torch.arange(m, device=r.device)[:, None] * (width + 1)
        sums.index_add_(0, (base + seg).reshape(-1), terms.reshape(-1, terms.shape[2]))
        hess = terms.new_zeros(m, width + 1, p + 1)
        for i in range(m):  # the design terms do not depend on the row: no (m, N, P) copy
            hess[i].index_add_(0, seg[i], products1)
        cum = torch.cat([hess, sums.view(m, width + 1, -1)], dim=2).cumsum(1)
        at, total = cum[j, rank], cum[j, width]  # at: points inside the fit ranked q
        q = p + 1
        ra_in, sa_in, sa_all = (
            at[:, q : q + k],
            at[:, q + k : q + 2 * k],
            total[:, q + k : q + 2 * k],
        )
        r2_in, abs_in, abs_all, inside = at[:, -2], at[:, -1], total[:, -1], at[:, p]
        af = a.to(acc)
        flat[fits] = at[:, :p]
        g[fits] = ra_in / af[:, None] + (sa_all - sa_in)
        F[fits] = 0.5 * r2_in / af**2 + (abs_all - abs_in) / af - 0.5 * (n - inside)
    dtype = alpha.dtype
    return g.to(dtype), design.unpack(flat.to(dtype)), F.to(dtype)


def _newton(
    design: Design,
    u: Tensor,
    g: Tensor,
    H: Tensor,
    F_ref: Tensor,
    ftol: float,
    max_iter: int,
    origin: Callable[[Tensor], Tensor],
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Minimise ``F(φ) = Σ H_1(u0 − Aφ)`` over φ for every row of ``u`` (B, N), overwritten.

    ``g`` (B, K), ``H`` (B, K, K) and ``F_ref`` (B,) are the derivatives and objective at
    φ = 0. Each step is a Newton step ``d = H⁻¹g`` (``g = Aᵀψ`` is minus the gradient).
    It is kept when the slope of the convex line ``t ↦ F(φ + t·d)`` at t = 1,
    ``−dᵀg_new``, is at most ``_SLOPE_TOL·λ²`` (``g_new`` is needed anyway, so this costs
    nothing); otherwise :func:`_backtrack` applies the Armijo test and shortens the step.
    A row stops when the Newton decrement with the true Hessian at its point predicts a
    relative gap below ``ftol`` (a full step from the right partition lands on the
    minimiser, so this is met in a few steps). No objective is evaluated in the loop;
    ``F_ref`` (the objective at the start, within O(K/N) of the minimum) is the scale of
    "relative". ``origin(rows)`` returns the starting ``u`` of those rows (a line search
    restarts from there rather than undoing a long step in floating point). Steps are
    capped at ``‖Ad‖₂ <= 2·F_ref + N``: the minimiser's residuals lie within that l1
    distance (``Σ|u| <= Σ H_1(u) + N/2``), so only absurd steps of a near-singular Hessian
    are cut. Returns φ (B, K), relative decrement (B,), iterations (B,), converged (B,)
    and the objective ``Σ H_1`` at the end (B,).
    """
    dtype, device = u.dtype, u.device
    b, k = u.shape[0], design.k
    F_ref = F_ref.abs().clamp_min(torch.finfo(dtype).tiny)
    eps = torch.finfo(dtype).eps
    out_phi = u.new_zeros(b, k)
    out_gap = u.new_full((b,), float("inf"))
    out_F = u.new_zeros(b)
    out_iters = torch.zeros(b, dtype=torch.long, device=device)
    out_conv = torch.zeros(b, dtype=torch.bool, device=device)

    idx = torch.arange(b, device=device)  # original row of every live row
    phi = u.new_zeros(b, k)
    psi: Tensor | None = None  # ψ(u), known after the first step
    frozen = torch.zeros(b, dtype=torch.bool, device=device)
    L, exact = design.factor(H, u)
    d = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
    dec = (g * d).sum(-1)  # λ²; the predicted decrease is λ²/2
    it = 0
    while True:
        rel = 0.5 * dec / F_ref
        ok = (rel <= ftol) & exact
        stop = ~frozen & (ok | ~torch.isfinite(rel) | (it >= max_iter))
        if bool(stop.any()):
            at = stop.nonzero().squeeze(1)
            rows = idx[at]
            out_phi[rows], out_gap[rows], out_conv[rows] = phi[at], rel[at], ok[at]
            out_iters[rows] = it
            out_F[rows] = huber_sum(u[at], None if psi is None else psi[at])
            frozen |= stop
        if bool(frozen.all()):
            break
        if float(frozen.float().mean()) >= _COMPACT:  # drop finished rows from the batch
            keep = (~frozen).nonzero().squeeze(1)
            u, phi, F_ref, d, dec, g, L, exact, idx = (
                t.index_select(0, keep) for t in (u, phi, F_ref, d, dec, g, L, exact, idx)
            )
            psi = None if psi is None else psi.index_select(0, keep)
            frozen = frozen.index_select(0, keep)
        d = d.masked_fill(frozen[:, None], 0.0)
        length = (d @ design.gram_chol).norm(dim=-1)  # ‖Ad‖₂, as G = LLᵀ
        shrink = ((2 * F_ref + design.n) / length).clamp(max=1).nan_to_num(1.0)
        d, length = d * shrink[:, None], length * shrink
        # slope tolerance: the rounding of dᵀAᵀψ, at most eps·‖Ad‖₁ <= eps·√N·‖Ad‖₂,
        # and never more than a small part of the predicted decrease
        tol = torch.minimum(_SLOPE_TOL * dec, _ROUNDING * eps * design.n**0.5 * length)

        u.addmm_(d, design.At, alpha=-1)  # full step, t = 1
        psi = u.clamp(-1, 1)
        g = psi @ design.A
        # The line slope at t = 1 is −dᵀg_new; by convexity F rose by at most that much.
        overshot = (d * g).sum(-1) < -tol
        step = d
        if bool(overshot.any()):
            step, g = _backtrack(design, u, psi, g, d, dec, overshot, tol, origin, idx, phi)
        phi += step
        it += 1
        inside = torch.eq(psi, u).to(dtype)  # the Hessian at the new point
        L, exact = design.factor(design.unpack(inside @ design.products), u)
        d = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
        dec = (g * d).sum(-1)
    return out_phi, out_gap, out_iters, out_conv, out_F


def _backtrack(
    design: Design,
    u: Tensor,
    psi: Tensor,
    g: Tensor,
    d: Tensor,
    dec: Tensor,
    bad: Tensor,
    tol: Tensor,
    origin: Callable[[Tensor], Tensor],
    idx: Tensor,
    phi: Tensor,
) -> tuple[Tensor, Tensor]:
    """Shorten the steps of the rows whose full step overshot the line minimum t* < 1.

    The line slope ``s(t) = −dᵀAᵀψ(u_old − t·Ad)`` is non-decreasing and piecewise
    linear, ``s(0) = −λ²``; regula falsi on [0, hi] lands at or next to t* (an exact line
    search), and is cut back to a halving when it stalls; a t is kept once
    ``s(t) <= tol`` (so F rose by at most ``tol`` by convexity). The step restarts from ``u_old`` recomputed from the start
    (not by undoing a long step). Updates ``u``, ``psi`` in place for those rows; returns
    the steps taken and the new ``g``.
    """
    rows = bad.nonzero().squeeze(1)
    d_r, lam2, tol_r = d.index_select(0, rows), dec.index_select(0, rows), tol.index_select(0, rows)
    u_old = torch.addmm(origin(idx[rows]), phi.index_select(0, rows), design.At, alpha=-1)
    Ad = d_r @ design.At  # (R, N); u(t) = u_old − t·Ad
    s_hi = -(d_r * g.index_select(0, rows)).sum(-1)  # slope at t = 1
    t_hi = torch.ones_like(lam2)
    t_out = torch.ones_like(lam2)
    todo: Tensor | None = None  # rows still searching (None: all of them)
    kept = []  # (row ids, u, ψ, g) of the steps taken, written back at the end
    for j in range(_BACKTRACKS):
        if todo is None:
            base, ad, dd, lam, tl = u_old, Ad, d_r, lam2, tol_r
        else:
            base, ad, dd, lam, tl = (x.index_select(0, todo) for x in (u_old, Ad, d_r, lam2, tol_r))
        t = t_hi * lam / (lam + s_hi)  # secant between (0, −λ²) and (t_hi, s_hi)
        if j % 3 == 2:
            t = 0.5 * t_hi
        trial = torch.addcmul(base, t[:, None], ad, value=-1)
        psi_t = trial.clamp(-1, 1)
        g_t = psi_t @ design.A
        slope = -(dd * g_t).sum(-1)
        take = (slope <= tl) | (j == _BACKTRACKS - 1)
        ids = torch.arange(len(rows), device=u.device) if todo is None else todo
        if bool(take.all()):
            kept.append((ids, trial, psi_t, g_t))
            t_out[ids] = t
            break
        sel = take.nonzero().squeeze(1)
        kept.append((ids[sel], trial[sel], psi_t[sel], g_t[sel]))
        t_out[ids[sel]] = t[sel]
        rest = (~take).nonzero().squeeze(1)
        todo, t_hi, s_hi = ids[rest], t[rest], slope[rest]
    g = g.clone()
    for ids, u_new, psi_new, g_new in kept:
        target = rows[ids]
        u.index_copy_(0, target, u_new)
        psi.index_copy_(0, target, psi_new)
        g.index_copy_(0, target, g_new)
    steps = d.clone()
    steps.index_copy_(0, rows, t_out[:, None] * d_r)
    return steps, g


def robust_start(design: Design, Y: Tensor, ftol: float, max_iter: int = 100) -> Tensor:
    """(M, N) -> (M, K): a Huber fit with α0 = 1.345·1.4826·MAD of the OLS residuals.

    It is within O(σ/√N) of the minimiser for every α, so each fit of the grid starts
    next to its answer and Newton needs only a few steps; label rows are few (families ×
    scales), so this costs a small fraction of the grid.
    """
    theta = design.least_squares(Y)
    r = design.residuals(Y, theta)
    spread = r.abs().median(dim=1).values * _MAD_TO_SIGMA
    floor = torch.finfo(Y.dtype).eps * (1 + Y.abs().amax(dim=1))
    a0 = torch.maximum(_START_ALPHA * spread, floor)
    u = r / a0[:, None]
    u0 = u.clone()
    phi = _newton(
        design, u, *_derivatives(design, u), ftol, max_iter, lambda i: u0.index_select(0, i)
    )[0]
    return theta + a0[:, None] * phi


def solve_exact(
    design: Design,
    Y: Tensor,
    alpha: Tensor,
    rows: Tensor | None = None,
    theta0: Tensor | None = None,
    *,
    ftol: float | None = None,
    max_iter: int = 100,
) -> ExactResult:
    """Exact Huber fits: fit b minimises ``Σ_i H_{α_b}(Y[rows_b, i] − a_iᵀθ)``.

    ``Y`` (M, N) label rows, ``alpha`` (B,), ``rows`` (B,) label row per fit (default: fit b
    uses row b), ``theta0`` (B, K) optional start (default: :func:`robust_start` per label
    row, shared by all its α, with the first derivatives from prefix sums).
    """
    ftol = default_ftol(Y.dtype) if ftol is None else ftol
    alpha = torch.as_tensor(alpha, dtype=Y.dtype, device=Y.device).reshape(-1)
    if rows is None:
        rows = torch.arange(Y.shape[0], device=Y.device)
    if theta0 is None:
        used, inverse = torch.unique(rows, return_inverse=True)
        sub = Y.index_select(0, used)
        start = robust_start(design, sub, ftol, max_iter)  # (m, K), one per label row used
        r0 = design.residuals(sub, start)  # (m, N)
        theta0 = start.index_select(0, inverse)
        g, H, F = _sorted_derivatives(design, r0, alpha, inverse)
        u = r0.index_select(0, inverse).div_(alpha[:, None])

        def origin(i: Tensor) -> Tensor:
            return r0.index_select(0, inverse[i]).div_(alpha[i, None])

    else:
        u = design.residuals(Y, theta0, rows).div_(alpha[:, None])
        g, H, F = _derivatives(design, u)

        def origin(i: Tensor) -> Tensor:
            return design.residuals(Y, theta0[i], rows[i]).div_(alpha[i, None])

    phi, gap, iters, conv, F_end = _newton(design, u, g, H, F, ftol, max_iter, origin)
    theta = theta0 + alpha[:, None] * phi
    loss = alpha.double() ** 2 * F_end.double()
    return ExactResult(theta=theta, loss=loss, gap=gap.double(), iters=iters, converged=conv)


@dataclass
class GDResult:
    """Per fit: coefficients θ (B, K) after the last step and the objective Σ H_α (float64)."""

    theta: Tensor
    loss: Tensor


def solve_gd(
    design: Design, Y: Tensor, alpha: Tensor, lr: Tensor, steps: int, rows: Tensor | None = None
) -> GDResult:
    """Full-batch gradient descent on the mean Huber loss from θ = 0 (the paper's protocol).

    ``θ ← θ + lr · Aᵀψ_α(y − Aθ)/N``; in units of α (φ = θ/α) this is
    ``φ ← φ + lr · Aᵀψ_1(u)/N`` with ``u`` kept up to date by one rank-K update per step.
    """
    if rows is None:
        rows = torch.arange(Y.shape[0], device=Y.device)
    u = Y.index_select(0, rows).div_(alpha[:, None])  # (B, N), θ = 0
    phi = u.new_zeros(u.shape[0], design.k)
    psi = torch.empty_like(u)
    coef = (lr / design.n)[:, None]
    for _ in range(steps):
        torch.clamp(u, -1, 1, out=psi)
        g = (psi @ design.A).mul_(coef)
        phi += g
        u.addmm_(g, design.At, alpha=-1)
    theta = alpha[:, None] * phi
    return GDResult(theta=theta, loss=objective(design, Y, theta, alpha, rows))
