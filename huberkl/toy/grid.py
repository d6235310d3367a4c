"""The batched grid: noise family × scale × seed × α (× learning rate for GD).

Seeds are drawn (design, one label row per (family, scale)) and solved in groups: the exact
solver takes every fit of a group of seeds in one batched call (each seed keeps its own
design), then GD fits of those seeds, one seed at a time, record their objective gap to
the exact minimum of the same (label row, α). A rich progress bar counts fits.

A chunk is the number of (N,)-rows one solver call holds: GD fits, or label rows for the
exact solver (each of its waves holds one α of every label row of the call; a call takes
whole seeds when one fits, else whole label rows of one seed). Chunks are sized from a
memory budget: ``mem_fraction`` of the free memory of a CUDA device, a fixed
``cpu_budget_mb`` on the CPU, capped by ``_CHUNK_CAP``.

A fit's answer depends only on its own label row and α, but the chunking decides which fits
share a matrix product, and BLAS may then add in another order: results agree within
float32 rounding across chunk sizes, thread counts and CPUs or BLAS code paths (MKL_CBWR,
ATEN_CPU_CAPABILITY; ``make test-paths``), and are bitwise equal only for the same inputs,
chunking, thread count, machine and code path (tested in ``tests/toy/test_grid.py``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from huberkl.distributions import check_family
from huberkl.errors import InputError
from huberkl.toy import solvers
from huberkl.toy.data import FAMILIES, SeedData, check_problem, make_seed_data

SOLVERS = ("exact", "gd")
# (N,)-rows of working memory per chunk row, from measured peaks (benchmarks/bench_toy.py).
_BUFFERS = {"exact": 8, "gd": 5}
_CHUNK_CAP = {"cpu": 256, "cuda": 1 << 16}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; raise
    ``InputError`` for a device this machine does not have."""
    key = str(name).strip().lower()
    if key == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if key == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", key)
    if match is None:
        raise InputError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(match.group(1) or 0)
    if count == 0:
        raise InputError(f"device {name!r} is not available: this machine has no CUDA device")
    if index >= count:
        raise InputError(
            f"device {name!r} is not available: this machine has {count} CUDA device(s)"
        )
    return torch.device("cuda", index)


def resolve_dtype(name: str) -> torch.dtype:
    if str(name) not in _DTYPES:
        raise InputError(f"unknown dtype {name!r}; allowed: {', '.join(_DTYPES)}")
    return _DTYPES[str(name)]


def available_cores() -> int:
    """The CPU cores this process may run on (``os.sched_getaffinity`` where the OS has it,
    else ``os.cpu_count()``): the default of ``toy.threads``. Never the load average, so a
    run's thread count, and with it its float32 rounding, does not depend on other jobs."""
    import os

    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


@contextmanager
def torch_threads(n: int | None):
    """Run the block with ``torch.set_num_threads(n)`` (None: leave as is), then restore."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def free_memory(device: torch.device) -> int:
    """Bytes free on a CUDA ``device`` (the driver's count)."""
    return int(torch.cuda.mem_get_info(device)[0])


def memory_budget(device: torch.device, mem_fraction: float, cpu_budget_mb: float) -> int:
    """Bytes one solver call may hold: ``mem_fraction`` of the free memory of a CUDA
    device; on the CPU the fixed ``cpu_budget_mb`` (not the free memory, so that the
    chunking, and with it the float32 rounding, is the same on every run)."""
    if device.type == "cuda":
        return int(free_memory(device) * mem_fraction)
    return int(cpu_budget_mb * 2**20)


def chunk_size(
    solver: str,
    n: int,
    k: int,
    rows_per_seed: int,
    dtype: torch.dtype,
    device: torch.device,
    budget: int,
) -> int:
    """(N,)-rows per solver call within ``budget`` bytes: GD fits, or exact label rows.

    An exact call holds, per seed, ``_BUFFERS["exact"]`` rows per label row and its design
    (``A``, ``Aᵀ`` and the K(K+1)/2 + 1 Hessian products), so whole seeds are counted when
    at least one fits; the result is capped by ``_CHUNK_CAP`` for the device.
    """
    row = n * torch.finfo(dtype).bits // 8
    if solver == "exact":
        design_rows = k * (k + 1) // 2 + 1 + 2 * k
        per_seed = row * (_BUFFERS["exact"] * rows_per_seed + design_rows)
        if budget >= per_seed:
            rows = budget // per_seed * rows_per_seed
        else:
            rows = budget // (row * _BUFFERS["exact"])
    else:
        rows = budget // (row * _BUFFERS[solver])
    return max(1, min(rows, _CHUNK_CAP.get(device.type, 256)))


@dataclass
class GridSpec:
    """What one grid run evaluates. ``alphas`` is (S, A): the α grid of each scale."""

    families: list[str]
    scales: list[float]
    alphas: np.ndarray
    seeds: list[int]
    solvers: list[str]
    n: int
    k: int
    delta: float
    theta: list[float]
    n_test: int
    base_seed: int = 0
    lrs: list[float] = field(default_factory=list)
    steps: int = 0
    gd_seeds: list[int] = field(default_factory=list)
    max_iter: int = 100
    ftol: float | None = None

    @property
    def n_fits(self) -> int:
        per_seed = len(self.families) * self.alphas.size
        total = per_seed * len(self.seeds) if "exact" in self.solvers else 0
        if "gd" in self.solvers:
            extra = [s for s in self.gd_seeds if "exact" not in self.solvers or s not in self.seeds]
            total += per_seed * len(extra)  # exact references for GD's gaps
            total += per_seed * len(self.lrs) * len(self.gd_seeds)
        return total


def alpha_grid(
    scales: Sequence[float], lo: float, hi: float, num: int, relative: bool
) -> np.ndarray:
    """(S, num) log-spaced α per scale: absolute [lo, hi], or [lo·s, hi·s] if ``relative``."""
    base = np.geomspace(lo, hi, num) if num > 1 else np.array([lo])
    if relative:
        return np.asarray(scales, dtype=np.float64)[:, None] * base[None, :]
    return np.tile(base, (len(scales), 1))


def check_spec(spec: GridSpec) -> None:
    """Raise ``InputError`` (one line) for a grid that cannot run.

    Not a duplicate of the CLI's check (:class:`huberkl.schema.ToySchema`, at compose): this
    guards :func:`run_grid` for library callers who build a ``GridSpec`` themselves.
    """
    check_problem(spec.n, spec.k, spec.delta, spec.n_test, spec.theta)
    if not spec.families:
        raise InputError(f"the noise family list is empty; allowed: {', '.join(FAMILIES)}")
    for family in spec.families:
        check_family(family, FAMILIES)
    if not spec.scales:
        raise InputError("toy.scales is empty: give at least one noise scale > 0")
    for s in spec.scales:
        if not (math.isfinite(s) and s > 0):
            raise InputError(f"noise scale must be > 0, got {s!r}")
    if spec.alphas.size == 0:
        raise InputError("the α grid is empty: toy.alpha.num must be >= 1")
    bad = spec.alphas[~(np.isfinite(spec.alphas) & (spec.alphas > 0))]
    if bad.size:
        raise InputError(f"α must be > 0, got {bad.flat[0]!r}")
    if not spec.seeds:
        raise InputError("toy.seeds must be >= 1")
    for solver in spec.solvers:
        if solver not in SOLVERS:
            raise InputError(f"unknown solver {solver!r}; allowed: exact, gd, both")
    if "gd" in spec.solvers:
        if not spec.lrs:
            raise InputError("toy.gd.lrs is empty: give at least one learning rate > 0")
        for lr in spec.lrs:
            if not (math.isfinite(lr) and lr > 0):
                raise InputError(f"learning rate must be > 0, got {lr!r}")
        if spec.steps < 1:
            raise InputError(f"toy.gd.steps must be >= 1, got {spec.steps}")
        if not spec.gd_seeds:
            raise InputError("toy.gd.seeds must be >= 1")


@dataclass
class GridResult:
    """Columns of ``results.csv`` as arrays, plus what the run measured about itself."""

    columns: dict[str, list]
    chunks: dict[str, int]
    fit_counts: dict[str, int]
    seconds: dict[str, float]
    peak_bytes: int


def run_grid(
    spec: GridSpec,
    *,
    device: torch.device,
    dtype: torch.dtype,
    mem_fraction: float = 0.25,
    cpu_budget_mb: float = 16.0,
    chunk: int | None = None,
    progress: Callable[[int, str], None] | None = None,
) -> GridResult:
    """Evaluate every fit of ``spec``; ``progress(n_fits_done, label)`` after each call."""
    import time

    check_spec(spec)
    cols: dict[str, list] = {
        key: []
        for key in (
            "noise",
            "scale",
            "seed",
            "alpha",
            "lr",
            "solver",
            "train_objective",
            "test_rmse",
            "gap",
            "converged",
            "iters",
        )
    }
    n_fam, n_scale, n_alpha = len(spec.families), len(spec.scales), spec.alphas.shape[1]
    n_rows = n_fam * n_scale  # label rows per seed
    budget = memory_budget(device, mem_fraction, cpu_budget_mb)
    chunks = {
        s: chunk or chunk_size(s, spec.n, spec.k, n_rows, dtype, device, budget)
        for s in ("exact", "gd")
    }
    counts = {"exact": 0, "gd": 0}
    seconds = {"exact": 0.0, "gd": 0.0, "data": 0.0}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # one fit per (family, scale, α): label row index and α, flattened (f, s, a)
    label = np.repeat(np.arange(n_fam * n_scale), n_alpha)
    alpha_all = np.tile(spec.alphas.reshape(-1), n_fam)
    fam_of = np.repeat(np.array(spec.families), n_scale * n_alpha)
    scale_of = np.tile(np.repeat(np.asarray(spec.scales, dtype=np.float64), n_alpha), n_fam)
    want_exact = "exact" in spec.solvers
    gd_seeds = set(spec.gd_seeds) if "gd" in spec.solvers else set()
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda *a: None)

    all_seeds = list(dict.fromkeys([*spec.seeds, *spec.gd_seeds] if gd_seeds else spec.seeds))
    per_call = max(1, chunks["exact"] // n_rows)  # whole seeds per exact call
    rows_t = torch.as_tensor(label, device=device)
    alpha_t = torch.as_tensor(alpha_all, dtype=dtype, device=device)
    for first in range(0, len(all_seeds), per_call):
        group = all_seeds[first : first + per_call]
        t0 = time.perf_counter()
        datas = draw_seeds(spec, group, dtype, device)
        sync()
        seconds["data"] += time.perf_counter() - t0

        t0 = time.perf_counter()
        exact = _exact_group(
            spec, datas, rows_t, alpha_t, chunks["exact"], n_alpha, progress, group
        )
        sync()
        seconds["exact"] += time.perf_counter() - t0
        counts["exact"] += len(label) * len(group)
        for seed, data, (theta_e, loss_e, gap_e, conv_e, it_e) in zip(
            group, datas, exact, strict=True
        ):
            if want_exact and seed in spec.seeds:
                _append(
                    cols,
                    fam_of,
                    scale_of,
                    seed,
                    alpha_all,
                    np.nan,
                    "exact",
                    loss_e,
                    data.test_rmse(theta_e),
                    gap_e,
                    conv_e,
                    it_e,
                )
            if seed not in gd_seeds:
                continue
            t0 = time.perf_counter()
            _gd_seed(
                spec,
                data,
                seed,
                label,
                alpha_t,
                loss_e,
                chunks["gd"],
                cols,
                fam_of,
                scale_of,
                alpha_all,
                progress,
            )
            sync()
            seconds["gd"] += time.perf_counter() - t0
            counts["gd"] += len(label) * len(spec.lrs)
    peak = int(torch.cuda.max_memory_allocated(device)) if device.type == "cuda" else _peak_rss()
    return GridResult(
        columns=cols, chunks=chunks, fit_counts=counts, seconds=seconds, peak_bytes=peak
    )


def draw_seeds(
    spec: GridSpec, seeds: Sequence[int], dtype: torch.dtype, device: torch.device
) -> list[SeedData]:
    """Each seed's data (:func:`make_seed_data`), drawn in up to ``torch.get_num_threads()``
    threads: numpy's generators and torch release the GIL, and every seed has its own
    generators, so the data are the same to the bit as drawn one after the other (tested);
    a GPU's whole grid would otherwise wait about 5 ms per seed on one CPU core."""

    def one(seed: int) -> SeedData:
        return make_seed_data(
            spec.families,
            spec.scales,
            seed,
            n=spec.n,
            k=spec.k,
            delta=spec.delta,
            theta=spec.theta,
            n_test=spec.n_test,
            base_seed=spec.base_seed,
            dtype=dtype,
            device=device,
        )

    workers = min(len(seeds), torch.get_num_threads())
    if workers <= 1:
        return [one(seed) for seed in seeds]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, seeds))


def _exact_group(spec, datas, rows_t, alpha_t, chunk, n_alpha, progress, group) -> list[tuple]:
    """Exact minima of every (label row, α) of the seeds ``group`` (their ``datas``): one
    batched call over all of them when whole seeds fit in ``chunk`` label rows, else one
    seed at a time in chunks of label rows. Per seed: (θ, loss, gap, converged, iters)."""
    if len(datas) > 1 or chunk * n_alpha >= len(rows_t):
        design = solvers.Design.from_matrix(torch.stack([d.A for d in datas]))
        res = solvers.solve_exact(
            design,
            torch.stack([d.Y for d in datas]),
            alpha_t,
            rows_t,
            ftol=spec.ftol,
            max_iter=spec.max_iter,
        )
        if progress:
            progress(res.loss.numel(), f"exact seeds {group[0]}-{group[-1]}")
        return [
            (res.theta[i], res.loss[i], res.gap[i], res.converged[i], res.iters[i])
            for i in range(len(datas))
        ]
    data = datas[0]
    design = solvers.Design.from_matrix(data.A)
    parts = []
    step = chunk * n_alpha  # a chunk holds whole label rows (waves hold one α of each)
    for lo in range(0, len(rows_t), step):
        sl = slice(lo, lo + step)
        res = solvers.solve_exact(
            design, data.Y, alpha_t[sl], rows_t[sl], ftol=spec.ftol, max_iter=spec.max_iter
        )
        parts.append((res.theta, res.loss, res.gap, res.converged, res.iters))
        if progress:
            progress(len(res.loss), f"exact seed {group[0]}")
    return [tuple(torch.cat(col) for col in zip(*parts, strict=True))]


def _gd_seed(
    spec, data, seed, label, alpha_t, loss_e, chunk, cols, fam_of, scale_of, alpha_all, progress
) -> None:
    """Gradient descent over (label row, α) × learning rate of one seed, with each fit's
    objective gap to the exact minimum ``loss_e`` of its (label row, α)."""
    device, dtype = alpha_t.device, alpha_t.dtype
    design = solvers.Design.from_matrix(data.A)
    n_lr = len(spec.lrs)
    g_rows = torch.as_tensor(np.repeat(label, n_lr), device=device)
    g_alpha = alpha_t.repeat_interleave(n_lr)
    g_lr = torch.as_tensor(np.tile(spec.lrs, len(label)), dtype=dtype, device=device)
    ref = loss_e.repeat_interleave(n_lr)
    thetas, losses = [], []
    for lo in range(0, len(g_rows), chunk):
        sl = slice(lo, lo + chunk)
        res = solvers.solve_gd(design, data.Y, g_alpha[sl], g_lr[sl], spec.steps, g_rows[sl])
        thetas.append(res.theta)
        losses.append(res.loss)
        if progress:
            progress(len(res.loss), f"gd seed {seed}")
    loss_g = torch.cat(losses)
    gap = (loss_g - ref) / ref.abs().clamp_min(torch.finfo(torch.float64).tiny)
    _append(
        cols,
        np.repeat(fam_of, n_lr),
        np.repeat(scale_of, n_lr),
        seed,
        np.repeat(alpha_all, n_lr),
        np.tile(np.asarray(spec.lrs, dtype=np.float64), len(label)),
        "gd",
        loss_g,
        data.test_rmse(torch.cat(thetas)),
        gap,
        None,
        None,
    )


def _peak_rss() -> int:
    """Peak resident memory of this process so far, in bytes (Linux reports KiB)."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _append(cols, noise, scale, seed, alpha, lr, solver, loss, rmse, gap, conv, iters) -> None:
    n = len(noise)
    cols["noise"].extend(noise.tolist())
    cols["scale"].extend(np.asarray(scale, dtype=np.float64).tolist())
    cols["seed"].extend([int(seed)] * n)
    cols["alpha"].extend(np.asarray(alpha, dtype=np.float64).tolist())
    cols["lr"].extend(np.broadcast_to(np.asarray(lr, dtype=np.float64), (n,)).tolist())
    cols["solver"].extend([solver] * n)
    cols["train_objective"].extend(loss.double().cpu().numpy().tolist())
    cols["test_rmse"].extend(rmse.double().cpu().numpy().tolist())
    gap_np = gap.double().cpu().numpy()
    cols["gap"].extend(gap_np.tolist())
    if conv is None:  # GD: "converged" means it reached the exact minimum within tolerance
        cols["converged"].extend([None] * n)
    else:
        cols["converged"].extend(conv.cpu().numpy().astype(bool).tolist())
    cols["iters"].extend([None] * n if iters is None else iters.cpu().numpy().tolist())
