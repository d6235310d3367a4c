"""``run_toy(cfg, out_dir)``: the whole toy experiment, as ``huberkl toy`` runs it.

Writes to ``out_dir``: ``results.csv`` (one row per fit), ``optimal.csv`` (per solver,
noise and scale), ``fit.csv`` (linear fit of the optimal α against the scale per solver
and noise, with the theory's slope), ``figure2.png``/``.pdf`` and ``summary.json``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig

from huberkl import schema
from huberkl.toy import analysis, grid, plots, theory


def build_spec(toy: DictConfig | dict, base_seed: int = 0) -> grid.GridSpec:
    """A :class:`grid.GridSpec` from the ``toy`` config section, checked by its schema
    (:class:`huberkl.schema.ToySchema`: the one place that validates the toy settings)."""
    t = schema.settings("toy", toy)
    a = t.alpha
    return grid.GridSpec(
        families=[str(f).lower() for f in t.families],
        scales=[float(s) for s in t.scales],
        alphas=grid.alpha_grid(
            t.scales, min(a.min, a.max), max(a.min, a.max), a.num, bool(a.relative)
        ),
        seeds=list(range(t.seeds)),
        solvers=["exact", "gd"] if t.solver == "both" else [t.solver],
        n=t.n,
        k=t.k,
        delta=float(t.delta),
        theta=[float(v) for v in t.theta],
        n_test=t.n_test,
        base_seed=int(base_seed),
        lrs=[float(v) for v in t.gd.lrs],
        steps=t.gd.steps,
        gd_seeds=list(range(t.gd.seeds)),
        max_iter=t.exact.max_iter,
        ftol=t.exact.ftol,
    )


def run_toy(cfg: DictConfig, out_dir: str | Path, *, console=None, progress: bool = True) -> dict:
    """Run the grid of ``cfg.toy``, write every output to ``out_dir``, return the summary."""
    import pandas as pd

    from huberkl.progress import progress_bar

    t = schema.settings("toy", cfg.toy)
    spec = build_spec(cfg.toy, int(cfg.get("seed", 0) or 0))
    device = grid.resolve_device(t.device)
    dtype = grid.resolve_dtype(t.dtype)
    artefact_tol = float(t.artefact_tol)
    bootstrap = t.bootstrap
    mem_fraction = float(t.mem_fraction)
    threads = resolve_threads(t.threads)
    cpu_budget_mb = float(t.cpu_budget_mb)
    chunk = t.chunk
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


def resolve_threads(value: int | None) -> int:
    """``toy.threads`` (checked by the schema): the count, or null for
    :func:`grid.available_cores`. The count is fixed by the config, not by how busy the
    machine is: float32 sums may round differently with another thread count (see
    ``tests/toy/test_solvers.py``)."""
    return grid.available_cores() if value is None else int(value)


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
