"""`huberkl toy` speed: batched exact solver vs scipy and vs itself one fit at a time,
the default CLI run's wall time, GD throughput, and peak memory against the chunk size.

Every ratio is measured in this run on this machine, both sides with the same thread
count: ``HUBERKL_BENCH_THREADS``, default the cores this process may use (what
``huberkl toy`` uses by default, ``grid.available_cores``). The CPU may be shared with
other jobs; they slow both sides of a ratio alike only roughly, so compare within a run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# One seed of the paper's problem: 3 families × 8 scales × 43 α = 1032 fits (>= 1024).
FAMILIES = ["laplace", "logistic", "cauchy"]
SCALES = [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
ALPHAS = np.geomspace(0.02, 20.0, 43)
THETA = [6, -3, -25, 15, 20, -10]
SUBSET = 24  # fits timed one by one (scipy and our own single-fit calls), spread over the grid


def _problem(dtype: torch.dtype = torch.float32):
    from huberkl.toy import solvers
    from huberkl.toy.data import make_seed_data

    data = make_seed_data(
        FAMILIES, SCALES, 0, n=10000, k=8, delta=2.0, theta=THETA, n_test=1000, dtype=dtype
    )
    rows = torch.arange(len(FAMILIES) * len(SCALES)).repeat_interleave(len(ALPHAS))
    alpha = torch.as_tensor(np.tile(ALPHAS, len(FAMILIES) * len(SCALES)), dtype=dtype)
    return data, solvers.Design.from_matrix(data.A), rows, alpha


def _best(fn, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _subset(n: int) -> np.ndarray:
    return np.linspace(0, n - 1, SUBSET).round().astype(int)


_SCIPY = """
import json, sys, time
import numpy as np
from scipy.optimize import least_squares
z = np.load(sys.argv[1])
A, Y, rows, alpha = z["A"], z["Y"], z["rows"], z["alpha"]
costs = []
t0 = time.perf_counter()
for r, a in zip(rows, alpha):
    fit = least_squares(lambda th: Y[r] - A @ th, np.zeros(A.shape[1]), jac=lambda th: -A,
                        loss="huber", f_scale=float(a))
    costs.append(fit.cost)
print(json.dumps({"seconds": time.perf_counter() - t0, "costs": costs}))
"""


def _scipy_loop(design, data, rows, alpha, threads: int) -> tuple[np.ndarray, float]:
    """scipy.optimize.least_squares looped over the fits, in a subprocess whose OpenBLAS
    uses the same number of threads as torch does here. Returns costs and s/fit."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fits.npz"
        np.savez(
            path,
            A=data.A.double().numpy(),
            Y=data.Y.double().numpy(),
            rows=rows.numpy(),
            alpha=alpha.double().numpy(),
        )
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        res = subprocess.run(
            [sys.executable, "-c", _SCIPY, str(path)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            encoding="utf-8",
        )
    out = json.loads(res.stdout)
    return np.asarray(out["costs"]), out["seconds"] / len(rows)


def bench_exact(threads: int) -> list[dict]:
    from huberkl.toy import grid, solvers

    data, design, rows, alpha = _problem()

    def batched():
        return solvers.solve_exact(design, data.Y, alpha, rows)

    with grid.torch_threads(threads):
        batched()  # warm-up
        t_batch = _best(batched) / len(rows)
        loss = batched().loss.numpy()
        pick = _subset(len(rows))

        def singles():
            for j in pick:
                solvers.solve_exact(design, data.Y, alpha[j : j + 1], rows[j : j + 1])

        singles()
        t_single = _best(singles, 2) / len(pick)

    costs, t_scipy = _scipy_loop(design, data, rows[pick], alpha[pick], threads)
    worst = float(np.max((loss[pick] - costs) / costs))  # > 0: ours above scipy's
    env = f"threads={threads}"
    return [
        {
            "benchmark": "toy exact solver, per fit (N=10000, K=8)",
            "baseline": f"scipy least_squares(loss='huber', jac=A) looped ({len(pick)} of the fits, per fit)",
            "candidate": f"solve_exact batched over {len(rows)} fits",
            "ratio": t_scipy / t_batch,
            "target": ">= 200",
            "ok": t_scipy / t_batch >= 200,
            "detail": f"scipy {t_scipy * 1e3:.2f} ms/fit, batched {t_batch * 1e3:.3f} ms/fit; "
            f"our objective - scipy's <= {worst:.1e} relative (float32 vs scipy float64); {env}",
        },
        {
            "benchmark": "toy exact solver, batching",
            "baseline": f"solve_exact one fit per call ({len(pick)} fits)",
            "candidate": f"solve_exact batched over {len(rows)} fits",
            "ratio": t_single / t_batch,
            "target": ">= 10",
            "ok": t_single / t_batch >= 10,
            "detail": f"single {t_single * 1e3:.2f} ms/fit, batched {t_batch * 1e3:.3f} ms/fit; {env}",
        },
    ]


def bench_seed_batching(threads: int, seeds: int = 4) -> list[dict]:
    """One exact call over several seeds (each on its own design) against one call per
    seed. On a CPU one seed per call is the default (``toy.cpu_budget_mb``): its working
    set stays in cache; on a GPU the grid's seeds go in one call."""
    from huberkl.toy import grid, solvers
    from huberkl.toy.data import make_seed_data

    datas = [
        make_seed_data(FAMILIES, SCALES, s, n=10000, k=8, delta=2.0, theta=THETA, n_test=1000)
        for s in range(seeds)
    ]
    _, _, rows, alpha = _problem()
    singles = [solvers.Design.from_matrix(d.A) for d in datas]
    stacked = solvers.Design.from_matrix(torch.stack([d.A for d in datas]))
    Y = torch.stack([d.Y for d in datas])

    def per_seed():
        for design, d in zip(singles, datas, strict=True):
            solvers.solve_exact(design, d.Y, alpha, rows)

    def batched():
        solvers.solve_exact(stacked, Y, alpha, rows)

    with grid.torch_threads(threads):
        per_seed(), batched()  # warm-up
        t_single, t_batch = _best(per_seed), _best(batched)
    return [
        {
            "benchmark": f"toy exact solver, {seeds} seeds in one call",
            "baseline": f"one call per seed ({len(rows)} fits each)",
            "candidate": f"one call over {seeds} seeds ({seeds * len(rows)} fits)",
            "ratio": t_single / t_batch,
            "target": "report (the CPU default is one seed per call)",
            "ok": None,
            "detail": f"per seed {t_single:.3f} s, batched {t_batch:.3f} s; threads={threads}",
        }
    ]


def bench_gd(threads: int) -> list[dict]:
    from huberkl.toy import grid, solvers

    data, design, rows, alpha = _problem()
    steps, batch = 200, 256
    lr = torch.full((batch,), 1.0)
    with grid.torch_threads(threads):
        solvers.solve_gd(design, data.Y, alpha[:batch], lr, 5, rows[:batch])
        t_batch = _best(
            lambda: solvers.solve_gd(design, data.Y, alpha[:batch], lr, steps, rows[:batch]), 2
        )
        pick = _subset(batch)[:8]

        def loop():
            for j in pick:
                solvers.solve_gd(design, data.Y, alpha[j : j + 1], lr[:1], steps, rows[j : j + 1])

        t_loop = _best(loop, 2) / len(pick) * batch
    rate = batch * steps / t_batch
    return [
        {
            "benchmark": "toy GD, fits·steps per second",
            "baseline": f"solve_gd one fit per call ({len(pick)} fits × {steps} steps)",
            "candidate": f"solve_gd batched over {batch} fits × {steps} steps",
            "ratio": t_loop / t_batch,
            "target": "report",
            "ok": None,
            "detail": f"batched {rate:,.0f} fit·steps/s, looped {batch * steps / t_loop:,.0f} fit·steps/s; "
            f"threads={threads}",
        }
    ]


def _cli(args: list[str], out: Path) -> tuple[float, dict]:
    exe = Path(sys.executable).with_name("huberkl")
    cmd = [str(exe) if exe.exists() else "huberkl", "toy", "--out", str(out), *args]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True, encoding="utf-8")
    wall = time.perf_counter() - t0
    return wall, json.loads((out / "summary.json").read_text(encoding="utf-8"))


def bench_cli() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        wall, summary = _cli([], Path(tmp) / "default")
    fits = summary["fits"]["exact"]
    return [
        {
            "benchmark": "huberkl toy, default (3 families, exact)",
            "baseline": "target 60 s wall",
            "candidate": f"{fits} exact fits, whole command",
            "ratio": 60.0 / wall,
            "target": ">= 1 (under 60 s)",
            "ok": wall < 60,
            "detail": f"{wall:.1f} s wall (grid {summary['seconds']['grid']:.1f} s, exact "
            f"{summary['seconds']['exact']:.1f} s) on {summary['device']}, threads={summary['threads']}",
        }
    ]


def _peak_rss_of(chunk: int) -> float:
    """Peak RSS growth (MiB) of one GD grid (1 seed, 2232 fits, 5 steps) with this chunk.

    Measured in a fresh process after a warm-up grid, with the kernel's peak-RSS mark
    reset (``/proc/self/clear_refs``) and a fixed glibc mmap threshold, so that freed
    buffers are returned and the mark follows the grid's own live buffers.
    """
    code = (
        "import torch\n"
        "from huberkl import config\n"
        "from huberkl.toy.run import build_spec\n"
        "from huberkl.toy import grid\n"
        "torch.set_num_threads(1)\n"
        "cfg = config.compose(['toy.seeds=1', 'toy.solver=gd', 'toy.gd.seeds=1', 'toy.gd.steps=5'])\n"
        "spec = build_spec(cfg.toy)\n"
        "def status(key):\n"
        "    line = next(l for l in open('/proc/self/status', encoding='utf-8') if l.startswith(key))\n"
        "    return int(line.split()[1]) / 1024\n"
        "cpu = torch.device('cpu')\n"
        "grid.run_grid(spec, device=cpu, dtype=torch.float32, chunk=1)  # warm-up\n"
        "open('/proc/self/clear_refs', 'w', encoding='utf-8').write('5')  # reset the peak mark\n"
        "base = status('VmRSS')\n"
        f"grid.run_grid(spec, device=cpu, dtype=torch.float32, chunk={chunk})\n"
        "print(max(0.0, status('VmHWM') - base))\n"
    )
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    res = subprocess.run(
        [sys.executable, "-c", code],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        encoding="utf-8",
    )
    return float(res.stdout.strip().splitlines()[-1])


def bench_memory() -> list[dict]:
    if not Path("/proc/self/clear_refs").exists():
        return []  # Linux only
    small, mid, large = _peak_rss_of(32), _peak_rss_of(1024), _peak_rss_of(2048)
    return [
        {
            "benchmark": "toy grid, peak memory against the chunk (GD, 2232 fits of N=10000)",
            "baseline": "chunks of 1024 fits",
            "candidate": "chunks of 2048 fits",
            "ratio": large / max(mid, 1e-9),
            "target": "report (~2: memory follows the chunk)",
            "ok": None,
            "detail": f"peak RSS growth during the grid: {small:.0f} MiB (chunk 32), {mid:.0f} MiB "
            f"(chunk 1024), {large:.0f} MiB (chunk 2048); on the CPU the auto chunk comes from "
            "toy.cpu_budget_mb, capped at 256",
        }
    ]


def run() -> list[dict]:
    from huberkl.toy import grid

    threads = int(os.environ.get("HUBERKL_BENCH_THREADS", grid.available_cores()))
    rows = []
    rows += bench_exact(threads)
    rows += bench_seed_batching(threads)
    rows += bench_gd(threads)
    rows += bench_cli()
    rows += bench_memory()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
