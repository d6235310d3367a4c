"""The grid's chunking: which fits share a solver call changes nothing beyond float32
rounding, and a rerun with the same chunking and threads is bitwise the same.

Smoke grid, smaller: 3 families × 3 scales = 9 label rows per seed, 3 seeds, 5 α, N = 1000,
GD (20 steps) on 2 seeds.
Chunks of 4 label rows split a seed's rows over calls, 9 is one seed per call, 27 puts
the three seeds in one batched call (each on its own design).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from huberkl import config
from huberkl.toy import grid, solvers
from huberkl.toy.data import truth_legendre
from huberkl.toy.run import build_spec

EPS32 = torch.finfo(torch.float32).eps
CPU = torch.device("cpu")


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    old = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def spec():
    small = ["toy.alpha.num=5", "toy.gd.steps=20"]
    return build_spec(config.compose(["toy=smoke", "toy.solver=both", *small]).toy)


_RUNS: dict[tuple[int, int], pd.DataFrame] = {}


def _run(spec, chunk: int) -> pd.DataFrame:
    """The grid with this chunk, under the current thread count (cached: first run)."""
    key = (chunk, torch.get_num_threads())
    if key not in _RUNS:
        res = grid.run_grid(spec, device=CPU, dtype=torch.float32, chunk=chunk)
        _RUNS[key] = pd.DataFrame(res.columns)
    return _RUNS[key]


def test_same_chunking_and_threads_give_the_same_bits(spec, threads):
    again = grid.run_grid(spec, device=CPU, dtype=torch.float32, chunk=27)
    assert _run(spec, 27).equals(pd.DataFrame(again.columns))


def test_seeds_share_one_call_when_they_fit(spec, monkeypatch):
    seen = []
    solve = solvers.solve_exact

    def spy(design, *args, **kwargs):
        seen.append(design.seeds)
        return solve(design, *args, **kwargs)

    monkeypatch.setattr(solvers, "solve_exact", spy)
    grid.run_grid(spec, device=CPU, dtype=torch.float32, chunk=27)
    assert seen == [3]  # the three seeds in one batched call
    seen.clear()
    grid.run_grid(spec, device=CPU, dtype=torch.float32, chunk=4)
    assert seen == [1] * 9  # three calls of <= 4 label rows per seed


def assert_same_within_float32(spec, got: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Objective: both runs stop within ftol of the minimum and report float32 sums of N
    positive terms (rounding about log2(N)·eps each). Test RMSE: it moves by at most
    ‖Δθ‖₂ (the test Gram matrix of the Legendre basis has norm <= 1), and θ by a few ulps of
    its largest coefficient (the truth's largest Legendre coefficient plus the noise)."""
    keys = ["noise", "scale", "seed", "alpha", "solver"]
    assert got[keys].equals(ref[keys])
    assert got.loc[got.solver == "exact", "converged"].astype(bool).all()
    obj_rtol = solvers.default_ftol(torch.float32) + 2 * np.log2(spec.n) * EPS32
    rel = (got.train_objective - ref.train_objective).abs() / ref.train_objective
    assert rel.max() <= obj_rtol, rel.max() / EPS32
    theta_max = np.abs(truth_legendre(np.asarray(spec.theta), spec.delta)).max() + 1
    rmse_atol = np.sqrt(spec.k) * 16 * EPS32 * theta_max
    assert (got.test_rmse - ref.test_rmse).abs().max() <= rmse_atol


@pytest.mark.parametrize("chunk", [4, 27])
def test_chunking_changes_results_only_within_float32_rounding(spec, chunk, threads):
    assert_same_within_float32(spec, _run(spec, chunk), _run(spec, 9))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_grid_equals_the_cpu_within_float32_rounding(spec):
    """The seed-batched grid on a GPU (all seeds in one call) against the CPU's."""
    res = grid.run_grid(spec, device=torch.device("cuda"), dtype=torch.float32)
    assert_same_within_float32(spec, pd.DataFrame(res.columns), _run(spec, 9))


def test_seeds_drawn_in_threads_are_the_same_to_the_bit(spec, threads):
    drawn = grid.draw_seeds(spec, [0, 1, 2, 5], torch.float32, CPU)
    for seed, got in zip([0, 1, 2, 5], drawn, strict=True):
        one = grid.draw_seeds(spec, [seed], torch.float32, CPU)[0]  # no thread pool
        assert torch.equal(got.A, one.A) and torch.equal(got.Y, one.Y)
        assert got.test_sq == one.test_sq
        # a BLAS product: the same within float64 rounding (huberkl/toy/data.py)
        torch.testing.assert_close(got.test_gram, one.test_gram, rtol=1e-13, atol=1e-15)
