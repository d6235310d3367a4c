"""Batched solvers for ``min_θ Σ_i H_α(y_i − a_iᵀθ)`` (Eq. 1 with the Huber loss, Eq. 4).

Many fits share one design ``A`` (N, K) per seed: fit b uses label row ``Y[rows[b]]`` and its own
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

Shapes are noted as (B, N): fits × points, (B, K): fits × coefficients. The tuned
constants below and what each was measured to buy: benchmarks/TUNING.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from huberkl.errors import InputError

# Statistical constants of the robust starting point shared by every α of one label row
# (not tuned): Huber's proposal-2 α0 = 1.345·σ̂ (95 % efficiency under Gaussian noise),
# and σ̂ = 1.4826·MAD (consistent for Gaussian noise).
_START_ALPHA = 1.345
_MAD_TO_SIGMA = 1.4826

# Tuned constants (what each buys, measured: benchmarks/TUNING.md).
# A step is kept when the line slope at its end is below _SLOPE_TOL of the predicted
# decrease λ² and below the rounding level of that slope, _ROUNDING·eps·‖Ad‖₁.
_SLOPE_TOL = 1e-3
_ROUNDING = 8.0
# A Newton step from a well-determined Hessian (at least _TRUSTED·K points in the quadratic
# zone, true Hessian, step not capped) may overshoot the line minimum by a slope of up to
# _OVERSHOOT·λ² without a line search.
_TRUSTED = 4
_OVERSHOOT = 0.25
# Finished rows are dropped from the batch once they are this fraction of it.
_COMPACT = 0.25
# Most line-search trials per step (the last trial is taken).
_BACKTRACKS = 20
# Weight of the IRLS terms ``1/|u|`` of the points outside the quadratic zone in the
# fallback metric for a singular Hessian.
_IRLS_WEIGHT = 0.1


def default_ftol(dtype: torch.dtype) -> float:
    """Relative objective accuracy the Newton decrement must reach, per dtype.

    Float32 test-RMSE digits are limited by the data, not by this: 1e-10 relative in the
    objective moves θ by about 1e-5 of the noise scale (see ``tests/toy/test_solvers.py``).
    """
    return 1e-10 if dtype == torch.float32 else 1e-15


# An accepted design has λ_min(Ĝ) > _RANK_MARGIN·K(K+1)·eps for its unit-diagonal Gram
# matrix Ĝ: Cholesky of Ĝ (and of AᵀA, the same up to diagonal scaling) runs to completion
# when λ_min(Ĝ) > K·γ_{K+1} ≈ K(K+1)·eps/2 (Demmel; Higham, Accuracy and Stability of
# Numerical Algorithms, Thm 10.7); the margin (8x that) covers the rounding of forming AᵀA.
# Below it, whether a factorisation reports success is decided by rounding, and differs
# between BLAS/LAPACK code paths.
_RANK_MARGIN = 4.0


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def rank_tolerance(k: int, dtype: torch.dtype) -> float:
    """Smallest singular value a column-normalised (N, K) design of ``dtype`` must exceed."""
    return (_RANK_MARGIN * k * (k + 1) * torch.finfo(dtype).eps) ** 0.5


def check_full_rank(A: Tensor) -> None:
    """Raise ``InputError`` unless every design of ``A`` (S, N, K) is numerically of full
    column rank in its dtype.

    Judged from the singular values of the design with unit-norm columns (so the scale of a
    column does not matter: Cholesky and Newton steps do not see it), computed by an
    orthogonal factorisation of ``A`` itself: their error is about eps·‖A‖, never squared
    as in AᵀA, so an exactly singular design lands orders of magnitude below
    :func:`rank_tolerance` on any code path. A factorisation's ``info`` is not used: for an
    exactly singular float32 AᵀA, MKL's AVX-512 Cholesky can report success with a pivot at
    rounding level.
    """
    s_n, n, k = A.shape
    name = _dtype_name(A.dtype)
    if not bool(torch.isfinite(A).all()):
        raise InputError(
            f"design matrix has NaN or infinite entries (N={n}, K={k}); need finite values"
        )
    if n < k:
        raise InputError(
            f"design matrix has fewer rows than columns (N={n}, K={k}); need N >= K "
            "and K linearly independent columns"
        )
    peak = A.abs().amax(dim=1, keepdim=True)  # (S, 1, K): rescale first, so norms never overflow
    zero = (peak == 0).squeeze(1)
    if bool(zero.any()):
        seed, col = (int(i) for i in zero.nonzero()[0])
        where = f"seed {seed}, " if s_n > 1 else ""
        raise InputError(
            f"design matrix has an all-zero column ({where}column {col}; N={n}, K={k}); "
            "need K linearly independent columns"
        )
    unit = A / peak
    unit = unit / torch.linalg.vector_norm(unit, dim=1, keepdim=True)
    smallest = torch.linalg.svdvals(unit)[:, -1]  # (S,)
    tol = rank_tolerance(k, A.dtype)
    bad = ~(smallest > tol)
    if bool(bad.any()):
        seed = int(bad.nonzero()[0, 0])
        where = f"seed {seed}, " if s_n > 1 else ""
        raise InputError(
            f"design matrix is rank deficient in {name} ({where}N={n}, K={k}): its smallest "
            f"singular value with unit-norm columns is {float(smallest[seed]):.1e}, at or "
            f"below the tolerance {tol:.1e}; allowed: K linearly independent columns (a "
            "polynomial basis needs K distinct x)"
        )


@dataclass
class Design:
    """The designs ``A`` (S, N, K) of S seeds, with what every Newton step reuses.

    ``products`` (S, N, K(K+1)/2 + 1) holds ``a_i a_iᵀ`` (upper triangle) and a last column
    of ones, so the Hessians of a whole batch and their counts of points in the quadratic
    zone are one batched matrix product ``D @ products`` (B, K(K+1)/2 + 1). Every seed
    keeps its own x: a fit only ever meets the design of its own seed.
    """

    A: Tensor  # (S, N, K)
    At: Tensor  # (S, K, N)
    products: Tensor  # (S, N, P)
    sym: Tensor  # (K·K,) position in the upper triangle of every (i, j)
    gram_chol: Tensor  # (S, K, K)

    @classmethod
    def from_matrix(cls, A: Tensor) -> Design:
        """One design (N, K) or a stack of S designs (S, N, K); ``InputError`` for one that is
        not numerically of full column rank in its dtype (:func:`check_full_rank`)."""
        A3 = A.unsqueeze(0) if A.dim() == 2 else A
        _, n, k = A3.shape
        check_full_rank(A3)
        iu, ju = torch.triu_indices(k, k, device=A.device)
        chol, info = torch.linalg.cholesky_ex(A3.mT @ A3)
        if bool((info != 0).any()):  # not expected after check_full_rank: a guard
            raise InputError(
                f"design matrix is rank deficient in {_dtype_name(A3.dtype)} (N={n}, K={k}): "
                "its Gram matrix AᵀA does not factor; need K linearly independent columns"
            )
        products = torch.cat([A3[:, :, iu] * A3[:, :, ju], A3.new_ones(A3.shape[0], n, 1)], dim=2)
        pos = torch.empty(k, k, dtype=torch.long, device=A.device)
        pos[iu, ju] = torch.arange(len(iu), device=A.device)
        pos[ju, iu] = pos[iu, ju]
        return cls(
            A=A3,
            At=A3.mT.contiguous(),
            products=products,
            sym=pos.reshape(-1),
            gram_chol=chol,
        )

    @property
    def k(self) -> int:
        return self.A.shape[2]

    @property
    def n(self) -> int:
        return self.A.shape[1]

    @property
    def seeds(self) -> int:
        return self.A.shape[0]

    def unpack(self, flat: Tensor) -> Tensor:
        """(B, K(K+1)/2 [+ 1]) upper triangles [and count] -> (B, K, K) symmetric matrices."""
        return flat.index_select(1, self.sym).view(-1, self.k, self.k)

    def single(self) -> tuple[Tensor, Tensor]:
        """``A`` (N, K) and ``Aᵀ`` (K, N) of a one-seed design."""
        if self.seeds != 1:
            raise ValueError(f"this needs a one-seed design, got {self.seeds} seeds")
        return self.A[0], self.At[0]

    def residuals(self, Y: Tensor, theta: Tensor, rows: Tensor | None = None) -> Tensor:
        """One seed: (M, N), (B, K) -> (B, N) ``Y[rows] − θ Aᵀ``."""
        base = Y if rows is None else Y.index_select(0, rows)
        return torch.addmm(base, theta, self.single()[1], alpha=-1)


def seed_mm(X: Tensor, sid: Tensor, mats: Tensor) -> Tensor:
    """Row r of ``X`` (R, C) times ``mats[sid[r]]`` (C, D) -> (R, D), for rows of any seeds.

    Rows are grouped by seed into a zero-padded (seeds present, most rows, C) batch for one
    ``bmm``; one seed is a plain matrix product.
    """
    if mats.shape[0] == 1:
        return X @ mats[0]
    order = torch.argsort(sid, stable=True)
    present, counts = torch.unique_consecutive(sid.index_select(0, order), return_counts=True)
    block = torch.repeat_interleave(torch.arange(len(present), device=X.device), counts)
    pos = torch.arange(len(order), device=X.device) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    pad = X.new_zeros(len(present), int(counts.max()), X.shape[1])
    pad[block, pos] = X.index_select(0, order)
    out = torch.bmm(pad, mats.index_select(0, present))[block, pos]
    return torch.empty_like(out).index_copy_(0, order, out)


@dataclass
class _Blocks:
    """The rows of a batch as blocks of ``m`` rows, block j on the design of seed
    ``seeds[j]``: the matrix products of the Newton loop are then single ``bmm`` calls.
    Only ``_newton`` pads blocks (with frozen rows) when it drops finished rows."""

    seeds: Tensor  # (S_b,)
    m: int
    A: Tensor  # (S_b, N, K)
    At: Tensor  # (S_b, K, N)
    products: Tensor  # (S_b, N, P)
    chol: Tensor  # (S_b, K, K)
    sid: Tensor  # (S_b·m,) design seed of every row

    @classmethod
    def of(cls, design: Design, m: int, seeds: Tensor | None = None) -> _Blocks:
        if seeds is None:  # every seed, in order: no copies
            seeds = torch.arange(design.seeds, device=design.A.device)
            mats = (design.A, design.At, design.products, design.gram_chol)
        else:
            mats = tuple(
                t.index_select(0, seeds)
                for t in (design.A, design.At, design.products, design.gram_chol)
            )
        return cls(seeds, m, *mats, sid=torch.repeat_interleave(seeds, m))

    def mm(self, X: Tensor, mats: Tensor) -> Tensor:
        """(S_b·m, C) rows times their block's ``mats`` (S_b, C, D) -> (S_b·m, D)."""
        if mats.shape[0] == 1:  # one seed: a plain product (fewer small ops per step)
            return X @ mats[0]
        return torch.bmm(X.view(len(self.seeds), self.m, -1), mats).view(X.shape[0], -1)

    def sub_(self, u: Tensor, d: Tensor) -> Tensor:
        """``u −= d Aᵀ`` in place, every row with its own seed's design."""
        nb = len(self.seeds)
        if nb == 1:
            return u.addmm_(d, self.At[0], alpha=-1)
        u.view(nb, self.m, -1).baddbmm_(d.view(nb, self.m, -1), self.At, alpha=-1)
        return u


def _factor(
    design: Design, blocks: _Blocks, H: Tensor, u: Tensor, count: Tensor
) -> tuple[Tensor, Tensor]:
    """Cholesky factors of (B, K, K) Hessians at scaled residuals ``u`` (B, N) with
    ``count`` (B,) points in the quadratic zone, and whether each is the true Hessian (only
    those may certify convergence).

    A singular Hessian (fewer than K points in the quadratic zone, i.e. α far below the
    noise: decided by the exact count, not by the factorisation's ``info``, which can
    report success for it on some code paths; or a factor that fails :func:`factored`)
    is replaced by ``Aᵀ diag(w) A`` with ``w = 1`` inside and
    ``_IRLS_WEIGHT/|u|`` outside: positive definite, and with weight 1 it is the IRLS
    majoriser (Huber's loss lies below that weighted quadratic), so its step descends.
    """
    L, info = torch.linalg.cholesky_ex(H)
    exact = factored(L, H, info) & (count >= design.k)
    singular = (~exact).nonzero().squeeze(1)
    if len(singular):
        sid = blocks.sid.index_select(0, singular)
        w = u.index_select(0, singular).abs().clamp_min(1).reciprocal_()
        w = torch.where(w == 1, w, _IRLS_WEIGHT * w)
        H_w = design.unpack(seed_mm(w, sid, design.products))
        L_w, info_w = torch.linalg.cholesky_ex(H_w)
        gram = design.gram_chol.index_select(0, sid).to(L.dtype)
        L_w = torch.where(factored(L_w, H_w, info_w)[:, None, None], L_w, gram)
        L = L.index_copy(0, singular, L_w)
    return L, exact


def factored(L: Tensor, H: Tensor, info: Tensor) -> Tensor:
    """(B,) whether each Cholesky factor ``L`` of ``H`` (B, K, K) is usable: ``info`` 0 and
    every pivot ``L_jj²`` above ``K·eps·H_jj``.

    ``info`` alone depends on the code path: for a singular H, MKL's AVX-512 kernels may
    report success with a pivot at rounding level where others fail. A pivot at or below
    K·eps of its column's diagonal (about the rounding of the K-term update that made it)
    carries no correct digit either way, so such a factor counts as failed on every path.
    """
    eps = torch.finfo(L.dtype).eps
    piv = L.diagonal(dim1=-2, dim2=-1).square()
    return (info == 0) & (piv > H.shape[-1] * eps * H.diagonal(dim1=-2, dim2=-1)).all(-1)


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
    blocks: _Blocks,
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
    flat = blocks.mm(torch.abs(u, out=inside).le_(1), blocks.products)  # |u| <= 1: ψ == u
    F = huber_sum(u, psi) if with_objective else None
    return blocks.mm(psi, blocks.A), design.unpack(flat), F, flat[:, -1]


@dataclass
class _Answers:
    """What :func:`_newton` returns per original row, filled in as rows finish."""

    phi: Tensor  # (B, K)
    gap: Tensor  # (B,) relative Newton decrement
    iters: Tensor  # (B,)
    converged: Tensor  # (B,)
    F: Tensor  # (B,) Σ H_1 at the end

    @classmethod
    def empty(cls, u: Tensor, k: int) -> _Answers:
        b = u.shape[0]
        return cls(
            phi=u.new_zeros(b, k),
            gap=u.new_full((b,), float("inf")),
            iters=torch.zeros(b, dtype=torch.long, device=u.device),
            converged=torch.zeros(b, dtype=torch.bool, device=u.device),
            F=u.new_zeros(b),
        )

    def record(
        self, rows: Tensor, phi: Tensor, gap: Tensor, ok: Tensor, it: int, F: Tensor
    ) -> None:
        self.phi[rows], self.gap[rows], self.converged[rows] = phi, gap, ok
        self.iters[rows] = it
        self.F[rows] = F


def _objective_of(u: Tensor, psi: Tensor | None, scratch: Tensor, at: Tensor) -> Tensor:
    """``Σ H_1(u)`` of rows ``at``; with ``ψ(u)`` known, every row at once into ``scratch``
    (no gathers of (B, N) rows)."""
    every = len(at) == len(u)
    if psi is not None:
        F_all = torch.add(u, psi, alpha=-0.5, out=scratch).mul_(psi).sum(-1)
        return F_all if every else F_all[at]
    return huber_sum(u) if every else huber_sum(u.index_select(0, at))


def _direction(
    design: Design, blocks: _Blocks, H: Tensor, u: Tensor, g: Tensor, count: Tensor
) -> tuple[Tensor, Tensor, Tensor]:
    """Newton step ``d = H⁻¹g`` (B, K), ``λ² = gᵀd`` (B,) and whether ``H`` was the true
    Hessian (not the fallback of :func:`_factor`)."""
    L, exact = _factor(design, blocks, H, u, count)
    d = torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
    return d, (g * d).sum(-1), exact


def _slope_tolerance(dec: Tensor, length: Tensor, trusted: Tensor, rounding: float) -> Tensor:
    """How far past the line minimum (in line slope at t = 1) a full step may land.

    The rounding of ``dᵀAᵀψ`` (at most ``eps·‖Ad‖₁ <= eps·√N·‖Ad‖₂``, times _ROUNDING),
    never more than _SLOPE_TOL of the predicted decrease λ²; a trusted Newton step may
    overshoot by _OVERSHOOT·λ². By convexity F rose by at most the tolerance.
    """
    tol = torch.minimum(_SLOPE_TOL * dec, rounding * length)
    return torch.where(trusted, _OVERSHOOT * dec, tol)


def _newton(
    design: Design,
    blocks: _Blocks,
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
    convex line ``t ↦ F(φ + t·d)`` at t = 1, ``−dᵀg_new``, is within
    :func:`_slope_tolerance` (``g_new`` is needed anyway, so this costs nothing);
    otherwise :func:`_backtrack` searches the line. A row stops when the Newton decrement
    with the true Hessian at its point predicts a relative gap below ``ftol`` (a full step
    from the right partition lands on the minimiser, so this is met in a step or two). No
    objective is evaluated in the loop; ``F_ref`` (within a small factor of the minimum)
    is the scale of "relative". ``origin(rows)`` returns the starting ``u`` of those rows
    (a line search restarts from there rather than undoing a long step in floating point).
    Steps are capped at ``‖Ad‖₂ <= 2·F_ref + N``: the minimiser's residuals lie within
    that l1 distance (``Σ|u| <= Σ H_1(u) + N/2``), so only absurd steps of a near-singular
    Hessian are cut. ``buffers``: optional ``(ψ(u), scratch)`` (B, N) workspaces,
    overwritten (fresh (B, N) pages cost a pass each). ``blocks``: which seed's design
    each row of ``u`` uses; when finished rows are dropped (:func:`_pack`), every block
    keeps its live rows and is padded to the longest with frozen copies.
    Returns φ (B, K), relative decrement (B,), iterations (B,), converged (B,) and the
    objective ``Σ H_1`` at the end (B,).
    """
    b, k, n = u.shape[0], design.k, design.n
    F_abs = F_ref.abs()
    half_inv_F = 0.5 / F_abs.clamp_min(torch.finfo(u.dtype).tiny)
    cap = 2 * F_abs + n
    rounding = _ROUNDING * torch.finfo(u.dtype).eps * n**0.5
    answers = _Answers.empty(u, k)
    idx = torch.arange(b, device=u.device)  # original row of every live row
    phi = u.new_zeros(b, k)
    # ψ(u) (None until the first step unless the caller passes it) and a scratch buffer
    psi, scratch = (None, torch.empty_like(u)) if buffers is None else buffers
    frozen = torch.zeros(b, dtype=torch.bool, device=u.device)  # finished, kept as padding
    d, dec, exact = _direction(design, blocks, H, u, g, count)
    it = 0
    while True:
        rel = dec * half_inv_F
        ok = (rel <= ftol) & exact
        stop = (ok | ~torch.isfinite(rel) if it < max_iter else torch.ones_like(ok)) & ~frozen
        if bool(stop.any()):
            at = stop.nonzero().squeeze(1)
            F_at = _objective_of(u, psi, scratch, at)
            answers.record(idx[at], phi[at], rel[at], ok[at], it, F_at)
            frozen |= stop
        n_frozen = int(frozen.sum())
        if n_frozen == len(u):
            break
        if n_frozen >= _COMPACT * len(u) and (packed := _pack(blocks, frozen)) is not None:
            keep, frozen, blocks = packed
            phi, d, dec, g, exact, count, idx, half_inv_F, cap = (
                t.index_select(0, keep)
                for t in (phi, d, dec, g, exact, count, idx, half_inv_F, cap)
            )
            u = u.index_select(0, keep)  # a fresh (m, N) tensor: no buffer is shared
            # ψ and the scratch are fully rewritten (clamp/abs with out=) before they are
            # read again, so their first m rows serve as the smaller buffers
            scratch = scratch[: len(keep)]
            psi = None if psi is None else psi[: len(keep)]
        d = d.masked_fill(frozen[:, None], 0.0)
        length = blocks.mm(d, blocks.chol).norm(dim=-1)  # ‖Ad‖₂, as G = LLᵀ
        shrink = (cap / length).clamp_(max=1)
        d, length = d * shrink[:, None], length * shrink
        trusted = exact & (count >= _TRUSTED * k) & (shrink == 1)
        tol = _slope_tolerance(dec, length, trusted, rounding)

        blocks.sub_(u, d)  # full step, t = 1
        psi = torch.clamp(u, -1, 1, out=torch.empty_like(u) if psi is None else psi)
        g = blocks.mm(psi, blocks.A)
        overshot = (d * g).sum(-1) < -tol
        step = d
        if bool(overshot.any()):
            step, g = _backtrack(
                design, blocks.sid, u, psi, g, d, dec, overshot, tol, origin, idx, phi
            )
        phi += step
        it += 1
        # the Hessian at the new point, from the indicator of the quadratic zone |u| <= 1
        flat = blocks.mm(torch.abs(u, out=scratch).le_(1), blocks.products)
        count = flat[:, -1]
        d, dec, exact = _direction(design, blocks, design.unpack(flat), u, g, count)
    return answers.phi, answers.gap, answers.iters, answers.converged, answers.F


def _pack(blocks: _Blocks, frozen: Tensor) -> tuple[Tensor, Tensor, _Blocks] | None:
    """Rows to keep when finished rows are dropped: every block's live rows first, blocks
    without any dropped, all padded to the longest with copies of their first live row
    (frozen). None when that would not shrink the batch by ``_COMPACT``."""
    nb, m = len(blocks.seeds), blocks.m
    if nb == 1:  # one seed: the live rows, no padding
        keep = (~frozen).nonzero().squeeze(1)
        mats = (blocks.A, blocks.At, blocks.products, blocks.chol)
        new = _Blocks(blocks.seeds, len(keep), *mats, sid=blocks.sid[: len(keep)])
        return keep, frozen.new_zeros(len(keep)), new
    live = (~frozen).view(nb, m)
    counts = live.sum(1)
    kept = (counts > 0).nonzero().squeeze(1)
    m2 = int(counts.max())
    if len(kept) * m2 > (1 - _COMPACT) * nb * m:
        return None
    order = torch.argsort(frozen.view(nb, m)[kept].to(torch.uint8), dim=1, stable=True)[:, :m2]
    pad = torch.arange(m2, device=frozen.device) >= counts[kept][:, None]
    order = torch.where(pad, order[:, :1], order)
    keep = (kept[:, None] * m + order).reshape(-1)
    mats = (blocks.A, blocks.At, blocks.products, blocks.chol)
    if len(kept) < nb:  # some seeds are done: their designs leave the batch
        mats = tuple(t.index_select(0, kept) for t in mats)
    seeds = blocks.seeds[kept]
    new = _Blocks(seeds, m2, *mats, sid=torch.repeat_interleave(seeds, m2))
    return keep, pad.reshape(-1), new


def _backtrack(
    design: Design,
    sid: Tensor,
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
    sid_r = sid.index_select(0, rows)
    u_old = origin(idx[rows]).sub_(seed_mm(phi.index_select(0, rows), sid_r, design.At))
    Ad = seed_mm(d_r, sid_r, design.At)  # (R, N); u(t) = u_old − t·Ad
    s_hi = -(d_r * g.index_select(0, rows)).sum(-1)  # slope at t = 1
    t_hi = torch.ones_like(lam2)
    t_out = torch.ones_like(lam2)
    todo: Tensor | None = None  # rows still searching (None: all of them)
    kept = []  # (row ids, u, ψ, g) of the steps taken, written back at the end
    for j in range(_BACKTRACKS):
        if todo is None:
            base, ad, dd, lam, tl, sd = u_old, Ad, d_r, lam2, tol_r, sid_r
        else:
            base, ad, dd, lam, tl, sd = (
                x.index_select(0, todo) for x in (u_old, Ad, d_r, lam2, tol_r, sid_r)
            )
        t = t_hi * lam / (lam + s_hi)  # secant between (0, −λ²) and (t_hi, s_hi)
        if j % 3 == 2:
            t = 0.5 * t_hi
        trial = torch.addcmul(base, t[:, None], ad, value=-1)
        psi_t = trial.clamp(-1, 1)
        g_t = seed_mm(psi_t, sd, design.A)
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
    """(S, M, N) label rows of every seed -> (S, M, K): a Huber fit with
    α0 = 1.345·1.4826·MAD of the OLS residuals.

    It is within O(σ/√N) of the minimiser for every α, so each fit of the grid starts
    next to its answer and Newton needs only a few steps; label rows are few (families ×
    scales per seed), so this costs a small fraction of the grid.
    """
    s, m, n = Y.shape
    rhs = torch.bmm(Y, design.A).mT  # (S, K, M)
    theta = torch.cholesky_solve(rhs, design.gram_chol).mT  # ordinary least squares
    r = torch.baddbmm(Y, theta, design.At, alpha=-1).view(s * m, n)
    spread = r.abs().median(dim=1).values * _MAD_TO_SIGMA
    floor = torch.finfo(Y.dtype).eps * (1 + Y.abs().amax(dim=2).view(-1))
    a0 = torch.maximum(_START_ALPHA * spread, floor)
    u = r / a0[:, None]
    u0 = u.clone()
    blocks = _Blocks.of(design, m)
    phi = _newton(
        design,
        blocks,
        u,
        *_derivatives(design, blocks, u),
        ftol,
        max_iter,
        lambda i: u0.index_select(0, i),
    )[0]
    return theta + (a0[:, None] * phi).view(s, m, -1)


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


def _solve_rows(
    design: Design,
    blocks: _Blocks,
    labels: Tensor,
    y_rows: Tensor,
    alpha: Tensor,
    start: Tensor,
    F_scale: Tensor | None,
    work: Tensor,
    ftol: float,
    max_iter: int,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One batch of fits: row r fits label row ``labels[y_rows[r]]`` with ``alpha[r]`` from
    ``start[r]`` (R, K) on the design of ``blocks.sid[r]``. ``F_scale`` (R,): the scale of
    the relative convergence test, or None to use the objective at the start. ``work``
    (3, R, N): the u, ψ and scratch buffers. Returns :func:`_newton`'s φ (θ = start + α·φ),
    gap, iterations, converged and ``Σ H_1``."""
    u, psi, scratch = work
    torch.index_select(labels, 0, y_rows, out=u)
    blocks.sub_(u, start).div_(alpha[:, None])
    g, H, F, count = _derivatives(design, blocks, u, F_scale is None, psi=psi, inside=scratch)
    F = F if F_scale is None else F_scale

    def origin(i: Tensor) -> Tensor:
        base = labels.index_select(0, y_rows[i])
        return base.sub_(seed_mm(start[i], blocks.sid[i], design.At)).div_(alpha[i, None])

    return _newton(design, blocks, u, g, H, F, count, ftol, max_iter, origin, (psi, scratch))


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
    """Exact Huber fits: fit b of seed s minimises ``Σ_i H_{α_b}(Y[s, rows_b, i] − a_siᵀθ)``.

    ``Y`` (S, M, N) label rows of the S seeds of ``design`` (or (M, N) for a one-seed
    design), ``alpha`` (B,), ``rows`` (B,) label row per fit (default: fit b uses row b),
    the same fits for every seed; ``theta0`` (S, B, K) (or (B, K)) optional start for
    every fit. Results are (S, B, ...) (or (B, ...)): every seed's fits in one batch, each
    on its own seed's design.

    Without ``theta0`` the fits of a label row are solved in waves of decreasing α, every
    label row of every seed in one batch per wave: wave 0 starts from
    :func:`robust_start`, and each later wave from the same row's minimiser at the next
    larger α, which is so close that one Newton step usually lands on the new minimiser
    (about 1 step per fit instead of 2-3 from a shared start). Each answer is still
    certified by its own Newton decrement; only its starting point depends on the other
    fits of its row.
    """
    one = Y.dim() == 2
    Y3 = Y.unsqueeze(0) if one else Y
    s_n, _, n = Y3.shape
    if s_n != design.seeds:
        raise ValueError(f"Y holds {s_n} seeds, the design {design.seeds}")
    ftol = default_ftol(Y.dtype) if ftol is None else ftol
    alpha = torch.as_tensor(alpha, dtype=Y.dtype, device=Y.device).reshape(-1)
    if rows is None:
        rows = torch.arange(Y3.shape[1], device=Y.device)
    b = len(alpha)
    theta = Y.new_zeros(s_n, b, design.k)
    F_end, gap = Y.new_zeros(s_n, b), Y.new_zeros(s_n, b)
    iters = torch.zeros(s_n, b, dtype=torch.long, device=Y.device)
    conv = torch.zeros(s_n, b, dtype=torch.bool, device=Y.device)
    if theta0 is not None:
        start0 = theta0.unsqueeze(0) if one else theta0
        sub, label_of, waves = Y3, rows, [torch.arange(b, device=Y.device)]
    else:
        used, label_of, waves = _waves(rows, alpha)
        sub = Y3.index_select(1, used)
        prev = robust_start(design, sub, ftol, max_iter)  # (S, m, K): the start of wave 0
        prev_alpha, prev_F = Y.new_ones(s_n, len(used)), Y.new_ones(s_n, len(used))
    m_sub = sub.shape[1]
    sub_flat = sub.reshape(s_n * m_sub, n)
    seed_base = torch.arange(s_n, device=Y.device)[:, None] * m_sub
    # (B, N) workspaces shared by the waves: u, ψ(u), scratch
    work = Y.new_empty(3, s_n * max((len(f) for f in waves), default=0), n)
    blocks_of: dict[int, _Blocks] = {}
    for w, fits in enumerate(waves):
        label, a = label_of[fits], alpha[fits]
        nb = len(fits)
        start = (start0 if theta0 is not None else prev).index_select(
            1, fits if theta0 is not None else label
        )  # (S, nb, K)
        if s_n == 1:
            y_rows, a_rows = label, a
        else:
            y_rows = (seed_base + label[None, :]).reshape(-1)  # row of every fit in sub_flat
            a_rows = a.repeat(s_n)
        if nb not in blocks_of:
            blocks_of[nb] = _Blocks.of(design, nb)
        blocks = blocks_of[nb]
        F_scale = None
        if theta0 is None and w > 0:
            # Σ H_1(r/α) at the previous α' minimiser lies within a factor α'/α of this at
            # the same point; it only sets the scale of the relative convergence test.
            F_scale = prev_F.index_select(1, label) * (prev_alpha.index_select(1, label) / a)
            F_scale = F_scale.view(-1)
        start_flat = start.reshape(-1, design.k)
        phi, gap_w, it_w, conv_w, F_w = _solve_rows(
            design, blocks, sub_flat, y_rows, a_rows, start_flat, F_scale,
            work[:, : s_n * nb], ftol, max_iter,
        )  # fmt: skip
        theta_w = (start_flat + a_rows[:, None] * phi).view(s_n, nb, -1)
        for out, value in (
            (theta, theta_w),
            (F_end, F_w),
            (gap, gap_w),
            (iters, it_w),
            (conv, conv_w),
        ):
            out.index_copy_(1, fits, value.view(s_n, nb, *out.shape[2:]))
        if theta0 is None:
            prev.index_copy_(1, label, theta_w)
            prev_alpha.index_copy_(1, label, a.expand(s_n, nb))
            prev_F.index_copy_(1, label, F_w.view(s_n, nb))
    loss = alpha.double() ** 2 * F_end.double()
    out = ExactResult(theta=theta, loss=loss, gap=gap.double(), iters=iters, converged=conv)
    if one:
        out = ExactResult(*(t[0] for t in (out.theta, out.loss, out.gap, out.iters, out.converged)))
    return out


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
    A, At = design.single()
    u = Y.index_select(0, rows).div_(alpha[:, None])  # (B, N), θ = 0
    phi = u.new_zeros(u.shape[0], design.k)
    psi = torch.empty_like(u)
    coef = (lr / design.n)[:, None]
    for _ in range(steps):
        torch.clamp(u, -1, 1, out=psi)
        g = (psi @ A).mul_(coef)
        phi += g
        u.addmm_(g, At, alpha=-1)
    theta = alpha[:, None] * phi
    return GDResult(theta=theta, loss=objective(design, Y, theta, alpha, rows))
