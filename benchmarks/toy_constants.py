"""A/B of the exact toy solver's tuned constants (the figures in benchmarks/TUNING.md).

Each ``PROBLEM:_NAME=VALUE`` argument changes one module constant of
:mod:`huberkl.toy.solvers` and times it against the default, interleaved in this run, best
of a few runs each, on one thread. Problems: ``bench`` (bench_toy's 1032 fits, waves from
the robust start), ``cold`` (the same fits each from θ = 0), ``small`` (3 seeds × 120 fits,
N = 300, α in [1e-4, 1e-2], from θ = 0). Steps per fit, line searches, fallback
factorisations and the share of converged fits are exact; the time ratio is as good as the
machine is quiet. Not part of ``python -m benchmarks`` (it takes minutes):

    PYTHONPATH=$PWD python -m benchmarks.toy_constants bench:_OVERSHOOT=0 small:_IRLS_WEIGHT=1
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.bench_toy import THETA, _problem
from huberkl.toy import solvers
from huberkl.toy.data import make_seed_data

Problem = tuple[solvers.Design, torch.Tensor, torch.Tensor, torch.Tensor, Any, int]


def problems() -> dict[str, Problem]:
    """(design, Y, α, rows, θ0 or None, repeats) per problem name."""
    data, design, rows, alpha = _problem()
    small = [
        make_seed_data(
            ["laplace", "logistic", "cauchy"], [0.5, 1.0, 2.0, 4.0], s, n=300, k=8, delta=2.0,
            theta=THETA, n_test=10,
        )
        for s in (1, 2, 3)
    ]  # fmt: skip
    a_small = torch.as_tensor(np.tile(np.geomspace(1e-4, 1e-2, 10), 12), dtype=torch.float32)
    return {
        "bench": (design, data.Y, alpha, rows, None, 5),
        "cold": (design, data.Y, alpha, rows, torch.zeros(len(alpha), 8), 3),
        "small": (
            solvers.Design.from_matrix(torch.stack([d.A for d in small])),
            torch.stack([d.Y for d in small]),
            a_small,
            torch.arange(12).repeat_interleave(10),
            torch.zeros(3, len(a_small), 8),
            5,
        ),
    }


class _Counts:
    """Counts line searches and fallback factorisations by wrapping the solver's helpers."""

    def __init__(self) -> None:
        self.line_searches = self.fallbacks = 0
        self._backtrack: Callable = solvers._backtrack
        self._factor: Callable = solvers._factor

    def __enter__(self) -> _Counts:
        def backtrack(*args: Any) -> Any:
            self.line_searches += 1
            return self._backtrack(*args)

        def factor(*args: Any) -> Any:
            L, exact = self._factor(*args)
            self.fallbacks += int((~exact).sum())
            return L, exact

        solvers._backtrack, solvers._factor = backtrack, factor
        return self

    def __exit__(self, *exc: object) -> None:
        solvers._backtrack, solvers._factor = self._backtrack, self._factor


def _run(problem: Problem) -> tuple[float, solvers.ExactResult, dict[str, int]]:
    design, Y, alpha, rows, theta0, _ = problem
    with _Counts() as counts:
        t0 = time.perf_counter()
        res = solvers.solve_exact(design, Y, alpha, rows, theta0)
        seconds = time.perf_counter() - t0
    return seconds, res, {"line_searches": counts.line_searches, "fallbacks": counts.fallbacks}


def compare(problem: Problem, name: str, value: float) -> dict[str, Any]:
    """The default and ``name = value`` on one problem, interleaved, best time of each."""
    default = getattr(solvers, name)
    times: dict[str, list[float]] = {"default": [], "variant": []}
    out: dict[str, Any] = {}
    for _ in range(problem[5]):
        for which, v in (("default", default), ("variant", type(default)(value))):
            setattr(solvers, name, v)
            try:
                seconds, res, counts = _run(problem)
            finally:
                setattr(solvers, name, default)
            times[which].append(seconds)
            out[which] = {
                "steps_per_fit": round(float(res.iters.float().mean()), 3),
                "converged": round(float(res.converged.float().mean()), 4),
                **counts,
            }
    out["time_ratio"] = round(min(times["variant"]) / min(times["default"]), 3)
    return out


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    probs = problems()
    for arg in argv:
        where, _, setting = arg.partition(":")
        name, _, value = setting.partition("=")
        if where not in probs or not hasattr(solvers, name) or not value:
            print(f"error: {arg!r}: want PROBLEM:_NAME=VALUE, PROBLEM in {sorted(probs)}")
            return 2
        result = compare(probs[where], name, float(value))
        print(json.dumps({"case": arg, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
