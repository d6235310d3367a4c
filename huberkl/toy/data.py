"""Problem generation for the toy experiment (Section 5).

Ground truth ``F(x) = Σ θ*_j x^(D−1−j)`` (θ* highest degree first, as the paper writes it),
x uniform on [−δ, δ], labels ``y = F(x) + ε``, a noise-free test set from the same x law.
The model is a polynomial of K coefficients expressed in the Legendre basis
``P_0..P_{K−1}`` of ``x/δ``: it spans exactly the same functions as the monomials
``1, x, …, x^{K−1}`` but its Gram matrix under uniform x is diagonal (``1/(2k+1)``), so
Newton and gradient steps are well conditioned in float32.

Random numbers come from numpy's PCG64 seeded by ``SeedSequence([seed, run, stream…])`` on
the CPU, so the draws are independent per (seed, family, scale) and a scale added to the
grid does not change the draws of the others. The design and labels are computed on the
CPU, elementwise in float64, so on one machine they are the same to the bit on every run
and thread count, whatever device the fits then run on (after the cast to the run's
dtype); the test-set Gram matrix is a BLAS product, the same within float64 rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numpy.polynomial import legendre as npleg
from torch import Tensor

from huberkl import distributions
from huberkl.errors import InputError
from huberkl.schema import TOY_FAMILIES

# The toy's noise families (Section 5; no Gaussian), a subset of huberkl.distributions';
# schema.py holds the list, where the config is checked without importing torch.
FAMILIES = TOY_FAMILIES
# Stream codes that keep the design, the test set and each family's noise independent.
_X_STREAM, _TEST_STREAM = 1, 2
_FAMILY_STREAM = {name: 10 + i for i, name in enumerate(FAMILIES)}


def legendre_basis(x: Tensor, k: int, delta: float) -> Tensor:
    """(N,) -> (N, K): ``P_j(x/δ)`` by Bonnet's recursion (runs on any device)."""
    u = x / delta
    cols = [torch.ones_like(u)]
    if k > 1:
        cols.append(u)
    for n in range(1, k - 1):
        cols.append(((2 * n + 1) * u * cols[n] - n * cols[n - 1]) / (n + 1))
    return torch.stack(cols[:k], dim=1)


def truth_legendre(theta_star: np.ndarray, delta: float) -> np.ndarray:
    """Legendre coefficients (in x/δ, lowest first) of F with monomial θ* (highest first)."""
    low_first = np.asarray(theta_star, dtype=np.float64)[::-1]
    in_u = low_first * delta ** np.arange(len(low_first))
    return npleg.poly2leg(in_u)


def polyval(theta_star: np.ndarray, x: np.ndarray) -> np.ndarray:
    """F(x) with θ* highest degree first (Horner, float64)."""
    return np.polyval(np.asarray(theta_star, dtype=np.float64), x)


def _rng(base_seed: int, seed: int, *stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([base_seed, seed, *stream])))


def _scale_key(scale: float) -> tuple[int, int]:
    """Two 32-bit words of the float64 bits of ``scale``: the stream depends on its value."""
    bits = int(np.float64(scale).view(np.uint64))
    return bits >> 32, bits & 0xFFFFFFFF


@dataclass
class SeedData:
    """One seed's draws: a shared design and one label row per (family, scale).

    ``A`` (N, K) is the training design, ``Y`` (F·S, N) the label rows in the order
    ``families × scales``; ``test_gram`` (K, K), ``test_cross`` (K,) and ``test_sq`` give
    the test MSE of coefficients c as ``cᵀGc − 2cᵀb + m`` exactly (float64), which equals
    the mean squared error over the sampled noise-free test points.
    """

    A: Tensor
    Y: Tensor
    test_gram: Tensor
    test_cross: Tensor
    test_sq: float

    def test_rmse(self, coef: Tensor) -> Tensor:
        """(B, K) -> (B,) RMSE on the noise-free test set, in float64."""
        c = coef.to(self.test_gram.dtype)
        mse = ((c @ self.test_gram) * c).sum(-1) - 2 * (c @ self.test_cross) + self.test_sq
        return mse.clamp_min(0).sqrt()


def make_seed_data(
    families: list[str],
    scales: list[float],
    seed: int,
    *,
    n: int,
    k: int,
    delta: float,
    theta: list[float],
    n_test: int,
    base_seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> SeedData:
    """Draw one seed's design and labels (CPU, float64) and move them to ``device``/``dtype``."""
    theta_star = np.asarray(theta, dtype=np.float64)
    x = _rng(base_seed, seed, _X_STREAM).uniform(-delta, delta, n)
    f_train = polyval(theta_star, x)
    rows = []
    for family in families:
        stream = _FAMILY_STREAM[distributions.check_family(family, FAMILIES)]
        for scale in scales:
            rng = _rng(base_seed, seed, stream, *_scale_key(scale))
            rows.append(f_train + distributions.sample(family, scale, n, rng))
    x_test = _rng(base_seed, seed, _TEST_STREAM).uniform(-delta, delta, n_test)
    f_test = torch.from_numpy(polyval(theta_star, x_test))
    a_test = legendre_basis(torch.from_numpy(x_test), k, delta)
    A = legendre_basis(torch.from_numpy(x), k, delta)
    return SeedData(
        A=A.to(device=device, dtype=dtype),
        Y=torch.from_numpy(np.stack(rows)).to(device=device, dtype=dtype),
        test_gram=(a_test.T @ a_test / n_test).to(device),
        test_cross=(a_test.T @ f_test / n_test).to(device),
        test_sq=float((f_test**2).mean()),
    )


def check_problem(n: int, k: int, delta: float, n_test: int, theta: list[float]) -> None:
    """Raise ``InputError`` for a problem that cannot be fitted."""
    if int(k) < 1:
        raise InputError(f"toy.k (polynomial coefficients) must be >= 1, got {k}")
    if int(n) < int(k):
        raise InputError(f"toy.n (training points) must be >= toy.k = {k}, got {n}")
    if int(n_test) < 1:
        raise InputError(f"toy.n_test must be >= 1, got {n_test}")
    if not (isinstance(delta, (int, float)) and math.isfinite(delta) and delta > 0):
        raise InputError(f"toy.delta must be a number > 0, got {delta!r}")
    if len(theta) < 1 or not all(math.isfinite(float(t)) for t in theta):
        raise InputError(f"toy.theta must be a non-empty list of finite numbers, got {theta!r}")
