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

from huberkl.errors import InputError

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
# A Newton step from a well-determined Hessian (at least _TRUSTED·K points in the quadratic
# zone, true Hessian, step not capped) may overshoot the line minimum by a slope of up to
# _OVERSHOOT·λ² without a line search: F then rose by at most that (convexity) and in
# practice fell; it halves the line searches of the toy grid. Other steps must not.
_TRUSTED = 4
_OVERSHOOT = 0.25
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

    ``products`` (N, K(K+1)/2 + 1) holds ``a_i a_iᵀ`` (upper triangle) and a last column
    of ones, so the Hessians of a whole batch and their counts of points in the quadratic
    zone are one matrix product ``D @ products`` (B, K(K+1)/2 + 1).
    """

    A: Tensor
    At: Tensor
    products: Tensor
    sym: Tensor  # (K·K,) position in the upper triangle of every (i, j)
    gram_chol: Tensor

    @classmethod
    def from_matrix(cls, A: Tensor) -> Design:
        n, k = A.shape
        iu, ju = torch.triu_indices(k, k, device=A.device)
        chol, info = torch.linalg.cholesky_ex(A.T @ A)
        if int(info) != 0:
            raise InputError(
                f"design matrix is rank deficient (N={n}, K={k}); need K distinct points"
            )
        products = torch.cat([A[:, iu] * A[:, ju], A.new_ones(n, 1)], dim=1)
        pos = torch.empty(k, k, dtype=torch.long, device=A.device)
        pos[iu, ju] = torch.arange(len(iu), device=A.device)
        pos[ju, iu] = pos[iu, ju]
        return cls(A=A, At=A.T.contiguous(), products=products, sym=pos.reshape(-1), gram_chol=chol)

    @property
    def k(self) -> int:
        return self.A.shape[1]

    @property
    def n(self) -> int:
        return self.A.shape[0]

    def unpack(self, flat: Tensor) -> Tensor:
        """(B, K(K+1)/2 [+ 1]) upper triangles [and count] -> (B, K, K) symmetric matrices."""
        return flat.index_select(1, self.sym).view(-1, self.k, self.k)

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
            L_w, info_w = torch.linalg.cholesky_ex(self.unpack(w @ self.products))  # noqa: E501
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


def _derivatives(
    design: Design,
    u: Tensor,
    with_objective: bool = True,
    psi: Tensor | None = None,
    inside: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
    """(B, N) scaled residuals -> ``g = Aᵀψ`` (B, K), Hessians (B, K, K), ``Σ H_1(u)`` (B,;
    None unless ``with_objective``) and the number of points in the quadratic zone (B,).
    ``psi`` and ``inside`` (B, N): optional buffers (``psi`` is left holding ``ψ(u)``)."""
    psi = torch.clamp(u, -1, 1, out=torch.empty_like(u) if psi is None else psi)
    inside = torch.empty_like(u) if inside is None else inside
    flat = torch.abs(u, out=inside).le_(1) @ design.products  # |u| <= 1, i.e. ψ == u
    F = huber_sum(u, psi) if with_objective else None
    return psi @ design.A, design.unpack(flat), F, flat[:, -1]


def _newton(
    design: Design,
    u: Tensor,
    g: Tensor,
    H: Tensor,
    F_ref: Tensor,
    count: Tensor,
    ftol: float,
    max_iter: int,
    origin: Callable[[Tensor], Tensor],
    buffers: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Minimise ``F(φ) = Σ H_1(u0 − Aφ)`` over φ for every row of ``u`` (B, N), overwritten.

    ``g`` (B, K), ``H`` (B, K, K), ``F_ref`` (B,) and ``count`` (B,) are the derivatives,
    objective and points in the quadratic zone at φ = 0. Each step is a Newton step
    ``d = H⁻¹g`` (``g = Aᵀψ`` is minus the gradient). It is kept when the slope of the
    convex line ``t ↦ F(φ + t·d)`` at t = 1, ``−dᵀg_new``, is within its tolerance
    (``g_new`` is needed anyway, so this costs nothing); otherwise :func:`_backtrack`
    searches the line. A row stops when the Newton decrement with the true Hessian at its
    point predicts a relative gap below ``ftol`` (a full step from the right partition
    lands on the minimiser, so this is met in a step or two). No objective is evaluated in
    the loop; ``F_ref`` (within a small factor of the minimum) is the scale of "relative".
    ``origin(rows)`` returns the starting ``u`` of those rows (a line search restarts from
    there rather than undoing a long step in floating point). Steps are capped at
    ``‖Ad‖₂ <= 2·F_ref + N``: the minimiser's residuals lie within that l1 distance
    (``Σ|u| <= Σ H_1(u) + N/2``), so only absurd steps of a near-singular Hessian are cut.
    ``buffers``: optional ``(ψ(u), scratch)`` (B, N) workspaces, overwritten (fresh
    (B, N) pages cost a pass each); ``u`` may be swapped with the scratch when finished
    rows are dropped.
    Returns φ (B, K), relative decrement (B,), iterations (B,), converged (B,) and the
    objective ``Σ H_1`` at the end (B,).
    """
    dtype, device = u.dtype, u.device
    b, k, n = u.shape[0], design.k, design.n
    F_abs = F_ref.abs()
    half_inv_F = 0.5 / F_abs.clamp_min(torch.finfo(dtype).tiny)
    cap = 2 * F_abs + n
    rounding = _ROUNDING * torch.finfo(dtype).eps * n**0.5
    out_phi = u.new_zeros(b, k)
    out_gap = u.new_full((b,), float("inf"))
    out_F = u.new_zeros(b)
    out_iters = torch.zeros(b, dtype=torch.long, device=device)
    out_conv = torch.zeros(b, dtype=torch.bool, device=device)

    idx = torch.arange(b, device=device)  # original row of every live row
    phi = u.new_zeros(b, k)
    if buffers is None:
        psi_buf: Tensor | None = None  # ψ(u), known after the first step
        inside = torch.empty_like(u)  # buffers, reused: fresh (B, N) pages cost a pass
    else:
        psi_buf, inside = buffers  # ψ(u) already there
    psi = psi_buf
    frozen = torch.zeros(b, dtype=torch.bool, device=device)
    n_frozen = 0
    L, exact = design.factor(H, u)
    d = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
    dec = (g * d).sum(-1)  # λ²; the predicted decrease is λ²/2
    it = 0
    while True:
        rel = dec * half_inv_F
        ok = (rel <= ftol) & exact
        stop = (ok | ~torch.isfinite(rel) if it < max_iter else torch.ones_like(ok)) & ~frozen
        n_stop = int(stop.sum())
        if n_stop:
            at = stop.nonzero().squeeze(1)
            rows = idx[at]
            out_phi[rows], out_gap[rows], out_conv[rows] = phi[at], rel[at], ok[at]
            out_iters[rows] = it
            if psi is not None:  # the scratch is free here: every row, no gathers
                F_all = torch.add(u, psi, alpha=-0.5, out=inside).mul_(psi).sum(-1)
                out_F[rows] = F_all if n_stop == len(u) else F_all[at]
            elif n_stop == len(u):
                out_F[rows] = huber_sum(u)
            else:
                out_F[rows] = huber_sum(
                    u.index_select(0, at), None if psi is None else psi.index_select(0, at)
                )
            frozen |= stop
            n_frozen += n_stop
        if n_frozen == len(u):
            break
        if n_frozen >= _COMPACT * len(u):  # drop finished rows from the batch
            keep = (~frozen).nonzero().squeeze(1)
            phi, d, dec, g, L, exact, count, idx, half_inv_F, cap = (
                t.index_select(0, keep)
                for t in (phi, d, dec, g, L, exact, count, idx, half_inv_F, cap)
            )
            # ψ and the scratch are rewritten before they are read again: no copies
            m = len(keep)
            u, inside = torch.index_select(u, 0, keep, out=inside[:m]), u[:m]
            psi = None if psi is None else psi[:m]
            frozen = frozen.index_select(0, keep)
            n_frozen = 0
        elif n_frozen:
            d = d.masked_fill(frozen[:, None], 0.0)
        length = (d @ design.gram_chol).norm(dim=-1)  # ‖Ad‖₂, as G = LLᵀ
        shrink = (cap / length).clamp_(max=1)
        d, length = d * shrink[:, None], length * shrink
        # slope tolerance: the rounding of dᵀAᵀψ (at most eps·‖Ad‖₁ <= eps·√N·‖Ad‖₂) and
        # never more than a small part of the predicted decrease; a trusted Newton step
        # (true Hessian from enough points, not capped) may overshoot by _OVERSHOOT·λ²
        tol = torch.minimum(_SLOPE_TOL * dec, rounding * length)
        trusted = exact & (count >= _TRUSTED * k) & (shrink == 1)
        tol = torch.where(trusted, _OVERSHOOT * dec, tol)

        u.addmm_(d, design.At, alpha=-1)  # full step, t = 1
        if psi is None:
            psi = torch.empty_like(u)
        torch.clamp(u, -1, 1, out=psi)
        g = psi @ design.A
        overshot = (d * g).sum(-1) < -tol
        step = d
        if bool(overshot.any()):
            step, g = _backtrack(design, u, psi, g, d, dec, overshot, tol, origin, idx, phi)
        phi += step
        it += 1
        torch.abs(u, out=inside).le_(1)  # the Hessian at the new point, and its count
        flat = inside @ design.products
        count = flat[:, -1]
        L, exact = design.factor(design.unpack(flat), u)
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


def _waves(rows: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Label rows used, each fit's index among them, and the fits of each wave: wave w
    holds the w-th largest α of every row that has that many."""
    used, inverse = torch.unique(rows, return_inverse=True)
    by_alpha = torch.argsort(alpha, descending=True, stable=True)
    order = by_alpha[torch.argsort(inverse[by_alpha], stable=True)]  # by row, then α down
    counts = torch.bincount(inverse, minlength=len(used))
    first = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(inverse)
    rank[order] = torch.arange(len(rows), device=rows.device) - first[inverse[order]]
    by_rank = torch.argsort(rank, stable=True)
    sizes = torch.bincount(rank).tolist()
    return used, inverse, list(torch.split(by_rank, sizes))


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
    uses row b), ``theta0`` (B, K) optional start for every fit.

    Without ``theta0`` the fits of a label row are solved in waves of decreasing α, every
    label row in one batch per wave: wave 0 starts from :func:`robust_start`, and each
    later wave from the same row's minimiser at the next larger α, which is so close that
    one Newton step usually lands on the new minimiser (about 1 step per fit instead of 2-3
    from a shared start). Each answer is still certified by its own Newton decrement; only
    its starting point depends on the other fits of its row.
    """
    ftol = default_ftol(Y.dtype) if ftol is None else ftol
    alpha = torch.as_tensor(alpha, dtype=Y.dtype, device=Y.device).reshape(-1)
    if rows is None:
        rows = torch.arange(Y.shape[0], device=Y.device)
    b = len(alpha)
    theta = Y.new_zeros(b, design.k)
    F_end, gap = Y.new_zeros(b), Y.new_zeros(b)
    iters = torch.zeros(b, dtype=torch.long, device=Y.device)
    conv = torch.zeros(b, dtype=torch.bool, device=Y.device)
    if theta0 is not None:
        sub, label_of, waves = Y, rows, [torch.arange(b, device=Y.device)]
    else:
        used, label_of, waves = _waves(rows, alpha)
        sub = Y.index_select(0, used)
        prev = robust_start(design, sub, ftol, max_iter)  # (m, K): the start of wave 0
        prev_alpha, prev_F = Y.new_ones(len(used)), Y.new_ones(len(used))
    # (B, N) workspaces shared by the waves: u, ψ(u), scratch
    work = Y.new_empty(3, max((len(f) for f in waves), default=0), design.n)
    for w, fits in enumerate(waves):
        label, a = label_of[fits], alpha[fits]
        start = theta0[fits] if theta0 is not None else prev.index_select(0, label)
        nb = len(fits)
        u = torch.index_select(sub, 0, label, out=work[0, :nb])
        u.addmm_(start, design.At, alpha=-1).div_(a[:, None])
        psi_w, inside_w = work[1, :nb], work[2, :nb]
        g, H, F, count = _derivatives(
            design, u, theta0 is not None or w == 0, psi=psi_w, inside=inside_w
        )
        if F is None:
            # Σ H_1(r/α) at the previous α' minimiser lies within a factor α'/α of this at
            # the same point; it only sets the scale of the relative convergence test.
            F = prev_F.index_select(0, label) * (prev_alpha.index_select(0, label) / a)

        def origin(i: Tensor, start=start, label=label, a=a) -> Tensor:
            return design.residuals(sub, start[i], label[i]).div_(a[i, None])

        phi, gap_w, it_w, conv_w, F_w = _newton(
            design, u, g, H, F, count, ftol, max_iter, origin, (psi_w, inside_w)
        )
        theta_w = start + a[:, None] * phi
        theta[fits], F_end[fits], gap[fits], iters[fits], conv[fits] = (
            theta_w,
            F_w,
            gap_w,
            it_w,
            conv_w,
        )
        if theta0 is None:
            prev.index_copy_(0, label, theta_w)
            prev_alpha.index_copy_(0, label, a)
            prev_F.index_copy_(0, label, F_w)
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
