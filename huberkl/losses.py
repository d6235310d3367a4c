"""The paper's losses, as stable torch functions with thin ``nn.Module`` wrappers.

Equation numbers refer to *An Alternative Probabilistic Interpretation of the Huber
Loss* (restated in ``docs/EQUATIONS.md``):

- ``huber``            H_α(x), Eq. 4
- ``smooth_l1``        H_β(x)/β, the frameworks' form (β = 0 is |x|)
- ``kl_loss``          D_{α,β}(x) = (α·exp(−|x|/α) + |x| − α)/β, Eq. 16
- ``laplace_kl``       KL(Laplace(µ1,b1) ‖ Laplace(µ2,b2)), Eq. 15 / 42
- ``kl_loss_grad``     D'_{α,β}(x), Eq. 44
- ``kl_loss_hess``     D''_{α,β}(x), Eq. 45
- ``huber_lower_bound`` / ``huber_upper_bound``  D_{α,1/α} ≤ H_α ≤ D_{α/2,1/α}, Eq. 20

Every function takes tensors of any shape, dtype and device; α and β may be floats or
tensors that broadcast against ``x`` (per-coordinate parameters). Half-precision inputs
are computed in float32 and cast back, because exp/expm1 of fp16 lose the digits that
matter near x = 0. Parameters may also be numpy scalars or ``Fraction`` (``"1/9"`` presets).
Bad input (α, β ≤ 0, NaN, ±inf, a non-number) raises ``ValueError`` whose message starts
with the parameter's name.
"""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from huberkl.errors import InputError

Reduction = Literal["none", "mean", "sum"]
Scalar = float | int | Tensor
_INT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64)

# Beyond u = |x|/α = _U_MAX, α·exp(−u) is below float64 resolution of |x| − α, so the
# loss is |x| − α there and |x|/α is never formed: it overflows float32 for |x| ~ 1e30,
# α ~ 1e-12, and an inf inside a torch.where branch makes the gradient w.r.t. α NaN.
_U_MAX = 60.0
# Below u = 1 the closed form α·expm1(−u) + |x| cancels catastrophically; the Taylor
# series of e^{−u} − 1 + u = u²·Σ_k (−u)^k/(k+2)! is used there instead. 18 terms make
# the truncation error < 1/20! ≈ 4e-19 relative on u ≤ 1.
_SERIES_TERMS = 18
# Horner in t = −u of Σ_k t^k/(k+2)! gives that series.
_EXP_SERIES = [1.0 / math.factorial(k + 2) for k in range(_SERIES_TERMS)]
# log1p series for r − 1 − log r with t = r − 1: Σ_{k≥2} (−1)^k t^k / k, used for |t| < 0.1.
_LOG_SERIES = [(-1.0) ** k / k for k in range(2, 2 + _SERIES_TERMS)]


def _check_positive(name: str, value: object, allow_zero: bool = False) -> None:
    """Raise ``InputError`` (a ``ValueError``) naming ``name`` unless every entry is a finite number > 0.

    Infinity is refused too: every formula here then yields ``inf − inf`` or ``0·inf``.
    """
    bound = ">= 0" if allow_zero else "> 0"
    if isinstance(value, np.ndarray):
        value = torch.as_tensor(value)
    if isinstance(value, Tensor):
        if value.dtype.is_complex or value.dtype == torch.bool:
            raise InputError(f"{name} must be a real tensor, got dtype {value.dtype}")
        v = value.detach()
        bad = ~torch.isfinite(v) | ((v < 0) if allow_zero else (v <= 0))
        if bool(bad.any()):
            first = v[bad].flatten()[0].item()
            raise InputError(f"{name} must be finite and {bound} everywhere, got {first!r}")
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a number {bound}, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or (f < 0 if allow_zero else f <= 0):
        raise InputError(f"{name} must be a finite number {bound}, got {value!r}")


def _as_input(name: str, value: object) -> Tensor:
    """``x`` (or ``mu``) as a tensor; numbers and arrays are accepted for convenience."""
    if isinstance(value, Tensor):
        if value.dtype.is_complex:
            raise InputError(f"{name} must be a real tensor, got dtype {value.dtype}")
        return value
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.ndarray, list, tuple)):
        raise InputError(f"{name} must be a tensor or a number, got {value!r}")
    try:
        t = torch.as_tensor(value if not isinstance(value, numbers.Real) else float(value))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"{name} must be a tensor or a number, got {value!r}") from exc
    if not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise InputError(f"{name} must be real numbers, got dtype {t.dtype}")
    return t


def _compute_dtype(x: Tensor) -> torch.dtype:
    if not x.is_floating_point():
        return torch.get_default_dtype()
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _as_tensor(value: Scalar, like: Tensor, dtype: torch.dtype) -> Tensor:
    if isinstance(value, numbers.Real) and not isinstance(value, Tensor):
        value = float(value)  # Fraction, numpy scalars
    return torch.as_tensor(value, dtype=dtype, device=like.device)


def _check_reduction(reduction: str) -> None:
    if reduction not in ("none", "mean", "sum"):
        raise InputError(f"reduction must be one of none|mean|sum, got {reduction!r}")


def _reduce(loss: Tensor, reduction: Reduction) -> Tensor:
    _check_reduction(reduction)
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    return loss.sum()


def _horner(t: Tensor, coeffs: list[float]) -> Tensor:
    acc = torch.full_like(t, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        acc = acc * t + c
    return acc


def _exp_residual(x: Tensor, alpha: Tensor) -> Tensor:
    """α·(e^{−|x|/α} − 1 + |x|/α) = α·expm1(−|x|/α) + |x|, exact to the last digit.

    Three regions of u = |x|/α: a Taylor series for u < 1 (the closed form cancels),
    the closed form for 1 ≤ u ≤ _U_MAX, and |x| − α beyond (e^{−u} below resolution).
    ``torch.where`` evaluates and differentiates every branch, so each branch is fed an
    input replaced by a harmless value outside its own region: |x|/α is never formed
    where it could overflow (|x| = 1e30, α = 1e-12 in float32), which would turn the
    gradient w.r.t. α into 0·inf = NaN.
    """
    ax = x.abs()
    small = ax < alpha
    far = ax > _U_MAX * alpha
    # Series branch: v = x/α in [−1, 1]; written with v² (not |v|²) so that autograd's
    # second derivative at x = 0 is the true 1/α (Appendix B), not 0.
    v = torch.where(small, x, torch.zeros_like(x)) / alpha
    series = alpha * v * v * _horner(v.abs().neg(), _EXP_SERIES)
    # Closed-form branch on 1 <= u <= _U_MAX; elsewhere fed |x| = α (u = 1).
    mid = ~(small | far)
    ax_mid = torch.where(mid, ax, alpha)
    closed = alpha * torch.expm1(-ax_mid / alpha) + ax_mid
    # Asymptote (Eq. 18): α·e^{−u} < 1e-26·α, far below the resolution of |x| − α.
    linear = ax - alpha
    return torch.where(small, series, torch.where(far, linear, closed))


def _prepare(x: object, reduction: str = "none") -> tuple[Tensor, torch.dtype, torch.dtype]:
    """Validate ``x`` and ``reduction``; return x in its compute dtype and the output dtype."""
    _check_reduction(reduction)
    x = _as_input("x", x)
    compute = _compute_dtype(x)
    out = x.dtype if x.is_floating_point() else compute
    return x.to(compute), compute, out


def huber(x: Tensor, alpha: Scalar, reduction: Reduction = "none") -> Tensor:
    """Huber loss H_α(x) (Eq. 4): x²/2 for |x| ≤ α, α(|x| − α/2) beyond.

    Written as ½·c² + α(|x| − |c|) with c = clamp(x, −α, α): no branch squares a huge x.
    """
    _check_positive("alpha", alpha)
    xc, dtype, out = _prepare(x, reduction)
    a = _as_tensor(alpha, xc, dtype)
    c = torch.maximum(torch.minimum(xc, a), -a)
    loss = 0.5 * c * c + a * (xc.abs() - c.abs())
    return _reduce(loss, reduction).to(out)


def smooth_l1(x: Tensor, beta: Scalar, reduction: Reduction = "none") -> Tensor:
    """Frameworks' smooth L1, H_β(x)/β; β = 0 is the α → 0 limit |x| (an L1 loss)."""
    _check_positive("beta", beta, allow_zero=True)
    xc, dtype, out = _prepare(x, reduction)
    b = _as_tensor(beta, xc, dtype)
    zero = b == 0
    b_safe = torch.where(zero, torch.ones_like(b), b)
    c = torch.maximum(torch.minimum(xc, b_safe), -b_safe)
    sl1 = (0.5 * c * c) / b_safe + (xc.abs() - c.abs())
    loss = torch.where(zero, xc.abs(), sl1)
    return _reduce(loss, reduction).to(out)


def kl_loss(x: Tensor, alpha: Scalar, beta: Scalar, reduction: Reduction = "none") -> Tensor:
    """Proposed loss D_{α,β}(x) = (α·exp(−|x|/α) + |x| − α)/β (Eq. 16).

    It is KL(Laplace(x*, α) ‖ Laplace(x̂, β)) up to the β-only terms when α = β (Eq. 15);
    minimum 0 at x = 0; ≈ x²/(2αβ) near 0 and (|x| − α)/β far away (Eq. 17–19); α → 0
    gives |x|/β.
    """
    _check_positive("alpha", alpha)
    _check_positive("beta", beta)
    xc, dtype, out = _prepare(x, reduction)
    a = _as_tensor(alpha, xc, dtype)
    b = _as_tensor(beta, xc, dtype)
    loss = _exp_residual(xc, a) / b
    return _reduce(loss, reduction).to(out)


def kl_loss_grad(x: Tensor, alpha: Scalar, beta: Scalar) -> Tensor:
    """D'_{α,β}(x) = sgn(x)·(1 − exp(−|x|/α))/β (Eq. 44); 0 at x = 0 (Appendix B)."""
    _check_positive("alpha", alpha)
    _check_positive("beta", beta)
    xc, dtype, out = _prepare(x)
    a = _as_tensor(alpha, xc, dtype)
    b = _as_tensor(beta, xc, dtype)
    # expm1 keeps 1 − e^{−u} exact for small u; u = inf (overflow) gives exactly 1.
    return (-torch.sign(xc) * torch.expm1(-xc.abs() / a) / b).to(out)


def kl_loss_hess(x: Tensor, alpha: Scalar, beta: Scalar) -> Tensor:
    """D''_{α,β}(x) = exp(−|x|/α)/(αβ) (Eq. 45); 1/(αβ) at x = 0 (Appendix B)."""
    _check_positive("alpha", alpha)
    _check_positive("beta", beta)
    xc, dtype, out = _prepare(x)
    a = _as_tensor(alpha, xc, dtype)
    b = _as_tensor(beta, xc, dtype)
    # Divide twice: α·β alone underflows in float32 for α = β = 1e-20.
    return (torch.exp(-xc.abs() / a) / a / b).to(out)


def huber_lower_bound(x: Tensor, alpha: Scalar, reduction: Reduction = "none") -> Tensor:
    """D_{α,1/α}(x) ≤ H_α(x), the tightest lower bound of this family (Eq. 20, App. C)."""
    _check_positive("alpha", alpha)
    alpha = float(alpha) if isinstance(alpha, numbers.Real) else alpha
    return kl_loss(x, alpha, 1.0 / alpha, reduction)


def huber_upper_bound(x: Tensor, alpha: Scalar, reduction: Reduction = "none") -> Tensor:
    """D_{α/2,1/α}(x) ≥ H_α(x), the tightest upper bound of this family (Eq. 20, App. C)."""
    _check_positive("alpha", alpha)
    alpha = float(alpha) if isinstance(alpha, numbers.Real) else alpha
    return kl_loss(x, alpha / 2, 1.0 / alpha, reduction)


def laplace_kl(
    mu1: Tensor, b1: Scalar, mu2: Tensor, b2: Scalar, reduction: Reduction = "none"
) -> Tensor:
    """KL(Laplace(µ1, b1) ‖ Laplace(µ2, b2)) (Eq. 15 / 42), d = |µ1 − µ2|.

    (b1·e^{−d/b1} + d)/b2 + log(b2/b1) − 1 is evaluated as
    D_{b1,b2}(d) + (r − 1 − log r) with r = b1/b2: two non-negative terms, each stable.
    """
    _check_positive("b1", b1)
    _check_positive("b2", b2)
    _check_reduction(reduction)
    mu1 = _as_input("mu1", mu1)
    mu2 = _as_input("mu2", mu2).to(mu1.device)
    if mu1.is_floating_point() or mu2.is_floating_point():
        out_dtype = torch.promote_types(mu1.dtype, mu2.dtype)
        out_dtype = out_dtype if out_dtype.is_floating_point else torch.get_default_dtype()
    else:
        out_dtype = torch.get_default_dtype()
    dtype = _compute_dtype(torch.empty((), dtype=out_dtype))
    d = mu1.to(dtype) - mu2.to(dtype)
    p = _as_tensor(b1, d, dtype)
    q = _as_tensor(b2, d, dtype)
    # r − 1 − log r, r = b1/b2. Near r = 1, t = (b1 − b2)/b2 is exact to the last digit
    # (b1 − b2 has no rounding error there) and the log1p series avoids the cancellation
    # of t − log1p(t); elsewhere log r = log b1 − log b2 stays finite even when r itself
    # rounds to 0 (b1 = 1e-12, b2 = 1 in float32).
    t = (p - q) / q
    near = t.abs() < 0.1
    t_near = torch.where(near, t, torch.zeros_like(t))
    series = t_near * t_near * _horner(t_near, _LOG_SERIES)
    log_r = torch.log(p) - torch.log(q)
    log_term = torch.where(near, series, t - log_r)
    loss = _exp_residual(d, p) / q + log_term
    return _reduce(loss, reduction).to(out_dtype)


def _store(module: nn.Module, name: str, value: Scalar) -> None:
    """Keep a tensor parameter on the module so ``.to(device)`` moves it (learnable if a Parameter)."""
    if isinstance(value, Tensor) and not isinstance(value, nn.Parameter):
        module.register_buffer(name, value)
    else:
        setattr(module, name, value)


class HuberLoss(nn.Module):
    """``nn.Module`` form of :func:`huber`; α may be a per-coordinate tensor."""

    def __init__(self, alpha: Scalar = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_positive("alpha", alpha)
        _check_reduction(reduction)
        _store(self, "alpha", alpha)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002 - torch's naming
        return huber(input - target, self.alpha, self.reduction)


class KLLoss(nn.Module):
    """``nn.Module`` form of :func:`kl_loss`; the default β = 1/α makes it H_α's lower bound."""

    def __init__(
        self, alpha: Scalar = 1.0, beta: Scalar | None = None, reduction: Reduction = "mean"
    ) -> None:
        super().__init__()
        _check_positive("alpha", alpha)
        if beta is None:
            beta = 1.0 / (float(alpha) if isinstance(alpha, numbers.Real) else alpha)
            if isinstance(beta, Tensor):
                beta = beta.detach()
        _check_positive("beta", beta)
        _check_reduction(reduction)
        _store(self, "alpha", alpha)
        _store(self, "beta", beta)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return kl_loss(input - target, self.alpha, self.beta, self.reduction)


class LaplaceKL(nn.Module):
    """KL between a label distribution Laplace(target, b1) and a prediction Laplace(input, b2)."""

    def __init__(self, b1: Scalar = 1.0, b2: Scalar = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        _check_positive("b1", b1)
        _check_positive("b2", b2)
        _check_reduction(reduction)
        _store(self, "b1", b1)
        _store(self, "b2", b2)
        self.reduction = reduction

    def forward(self, input: Tensor, target: Tensor) -> Tensor:  # noqa: A002
        return laplace_kl(target, self.b1, input, self.b2, self.reduction)


__all__ = [
    "HuberLoss",
    "KLLoss",
    "LaplaceKL",
    "huber",
    "huber_lower_bound",
    "huber_upper_bound",
    "kl_loss",
    "kl_loss_grad",
    "kl_loss_hess",
    "laplace_kl",
    "smooth_l1",
]
