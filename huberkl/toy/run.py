"""``run_toy(cfg, out_dir)``: the whole toy experiment, as ``huberkl toy`` runs it.

Writes to ``out_dir``: ``results.csv`` (one row per fit), ``optimal.csv`` (per solver,
noise and scale), ``fit.csv`` (linear fit of the optimal α against the scale per solver
and noise, with the theory's slope), ``figure2.png``/``.pdf`` and ``summary.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from huberkl.errors import InputError
from huberkl.toy import analysis, grid, plots, theory
from huberkl.toy.data import check_family


def _numbers(name: str, value: Any) -> list[float]:
    items = value if isinstance(value, (list, tuple)) else [value]
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a list of numbers, got {value!r}") from None


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    return value


def build_spec(toy: DictConfig | dict, base_seed: int = 0) -> grid.GridSpec:
    """A checked :class:`grid.GridSpec` from the ``toy`` config section."""
    t = OmegaConf.to_container(toy, resolve=True) if isinstance(toy, DictConfig) else dict(toy)
    families = t["families"] if isinstance(t["families"], list) else [t["families"]]
    families = [check_family(f) for f in families]
    solver = str(t.get("solver", "exact")).lower()
    if solver not in ("exact", "gd", "both"):
        raise InputError(f"unknown solver {solver!r}; allowed: exact, gd, both")
    scales = _numbers("toy.scales", t["scales"])
    a = t["alpha"]
    lo, hi = float(a["min"]), float(a["max"])
    for name, v in (("toy.alpha.min", lo), ("toy.alpha.max", hi)):
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{name} (α) must be > 0, got {v!r}")
    num = _count("toy.alpha.num", a["num"])
    if num < 1:
        raise InputError(f"the α grid is empty: toy.alpha.num must be >= 1, got {num}")
    for s in scales:
        if not (math.isfinite(s) and s > 0):
            raise InputError(f"noise scale must be > 0, got {s!r}")
    seeds = _count("toy.seeds", t["seeds"])
    gd = t.get("gd", {})
    gd_seeds = _count("toy.gd.seeds", gd.get("seeds", 1))
    spec = grid.GridSpec(
        families=families,
        scales=scales,
        alphas=grid.alpha_grid(
            scales, min(lo, hi), max(lo, hi), num, bool(a.get("relative", False))
        ),
        seeds=list(range(seeds)),
        solvers=["exact", "gd"] if solver == "both" else [solver],
        n=_count("toy.n", t["n"]),
        k=_count("toy.k", t["k"]),
        delta=float(t["delta"]),
        theta=_numbers("toy.theta", t["theta"]),
        n_test=_count("toy.n_test", t["n_test"]),
        base_seed=int(base_seed),
        lrs=_numbers("toy.gd.lrs", gd.get("lrs", [])),
        steps=_count("toy.gd.steps", gd.get("steps", 0)),
        gd_seeds=list(range(gd_seeds)),
        max_iter=_count("toy.exact.max_iter", t.get("exact", {}).get("max_iter", 100)),
        ftol=t.get("exact", {}).get("ftol"),
    )
    grid.check_spec(spec)
    return spec


def run_toy(cfg: DictConfig, out_dir: str | Path, *, console=None, progress: bool = True) -> dict:
    """Run the grid of ``cfg.toy``, write every output to ``out_dir``, return the summary."""
    import pandas as pd

    from huberkl.progress import progress_bar

    toy = cfg.toy
    spec = build_spec(toy, int(cfg.get("seed", 0) or 0))
    device = grid.resolve_device(toy.get("device", "auto"))
    dtype = grid.resolve_dtype(toy.get("dtype", "float32"))
    artefact_tol = float(toy.get("artefact_tol", 1e-5))
    bootstrap = _count("toy.bootstrap", toy.get("bootstrap", 1000))
    if bootstrap < 1:
        raise InputError(f"toy.bootstrap must be >= 1, got {bootstrap}")
    mem_fraction = float(toy.get("mem_fraction", 0.25))
    if not 0 < mem_fraction <= 1:
        raise InputError(f"toy.mem_fraction must be in (0, 1], got {mem_fraction}")
    threads = resolve_threads(toy.get("threads"))
    cpu_budget_mb = resolve_cpu_budget(toy.get("cpu_budget_mb", 16))
    chunk = toy.get("chunk")
    if chunk is not None and _count("toy.chunk", chunk) < 1:
        raise InputError(f"toy.chunk must be >= 1 or null, got {chunk}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _record_run(out, {"threads": threads, "device": str(device)})

    t0 = time.perf_counter()
    with (
        grid.torch_threads(threads),
        progress_bar("toy", unit="fits", console=console, enabled=progress) as bar,
    ):
        task = bar.add_task(f"{device.type} {str(dtype).removeprefix('torch.')}", total=spec.n_fits)
        res = grid.run_grid(
            spec,
            device=device,
            dtype=dtype,
            mem_fraction=mem_fraction,
            cpu_budget_mb=cpu_budget_mb,
            chunk=chunk,
            progress=lambda n, label: bar.update(task, advance=n, description=label),
        )
    t_grid = time.perf_counter() - t0

    results = pd.DataFrame(res.columns)
    is_gd = results["solver"] == "gd"
    results.loc[is_gd, "converged"] = results.loc[is_gd, "gap"] <= artefact_tol
    results.to_csv(out / "results.csv", index=False)
    unit = {f: theory.optimal_alpha(f) for f in spec.families}
    optimal = analysis.optimal_table(
        results, bootstrap=bootstrap, seed=spec.base_seed, artefact_tol=artefact_tol, theory=unit
    )
    optimal.to_csv(out / "optimal.csv", index=False)
    fits = analysis.linear_fits(optimal, unit)
    fits.to_csv(out / "fit.csv", index=False)
    figures = plots.figure2(optimal, fits, out)
    seconds = time.perf_counter() - t0

    exact_rows = results[results["solver"] == "exact"]
    summary = {
        "device": str(device),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": threads,
        "fits": res.fit_counts,
        "chunks": res.chunks,
        "seconds": {"total": seconds, "grid": t_grid, **res.seconds},
        "exact_fits_per_second": res.fit_counts["exact"] / res.seconds["exact"]
        if res.seconds["exact"]
        else None,
        "gd_fit_steps_per_second": (
            res.fit_counts["gd"] * spec.steps / res.seconds["gd"] if res.seconds["gd"] else None
        ),
        "peak_memory_bytes": res.peak_bytes,
        "peak_memory_kind": "torch.cuda.max_memory_allocated"
        if device.type == "cuda"
        else "process peak RSS",
        "unconverged_exact": int((~exact_rows["converged"].astype(bool)).sum()),
        "max_exact_gap": float(exact_rows["gap"].max()) if len(exact_rows) else None,
        "artefacts": int(optimal["artefact"].sum()),
        "at_edge": int(optimal["at_edge"].sum()),
        "theory_alpha_per_scale": unit,
        "fits_table": json.loads(fits.to_json(orient="records")),
        "files": [
            p.name for p in (out / "results.csv", out / "optimal.csv", out / "fit.csv", *figures)
        ],
    }
    (out / "summary.json").write_text(
        json.dumps(summary, indent=2, default=_jsonable) + "\n", encoding="utf-8"
    )
    return summary


def resolve_threads(value: Any) -> int:
    """``toy.threads``: a count >= 1, or null for :func:`grid.available_cores`. The count
    is fixed by the config, not by how busy the machine is: float32 sums may round
    differently with another thread count (see ``tests/test_toy_solvers.py``)."""
    if value is None:
        return grid.available_cores()
    if _count("toy.threads", value) < 1:
        raise InputError(f"toy.threads must be >= 1 or null, got {value}")
    return int(value)


def resolve_cpu_budget(value: Any) -> float:
    """``toy.cpu_budget_mb``: MiB one solver call may hold on the CPU, a number > 0."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float))
    if not (ok and math.isfinite(value) and value > 0):
        raise InputError(f"toy.cpu_budget_mb must be a number > 0, got {value!r}")
    return float(value)


def _record_run(out: Path, extra: dict) -> None:
    """Add ``extra`` to ``run.json`` in ``out`` (written by the CLI's setup), or create it."""
    path = out / "run.json"
    info = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    info.update(extra)
    path.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def _jsonable(x: Any) -> Any:
    if isinstance(x, (np.integer, np.floating)):
        return x.item()
    return str(x)
