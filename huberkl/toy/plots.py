"""Figure 2: optimal α against the noise scale, one panel per noise family.

Markers are the measured optima with their bootstrap 68 % interval over seeds (hollow:
the optimum sits at the edge of the α grid, so it is a bound, not a value; a cross marks
a GD optimum whose objective is above the exact minimum by more than the tolerance, an
optimiser artefact); solid lines the fitted lines, dashed the asymptotic theory.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

_STYLE = {"exact": ("C0", "o"), "gd": ("C3", "s")}
_TITLES = {"laplace": "Laplace", "logistic": "Logistic", "cauchy": "Cauchy"}


def figure2(optimal: pd.DataFrame, fits: pd.DataFrame, out_dir: Path, dpi: int = 150) -> list[Path]:
    """Write ``figure2.png`` and ``figure2.pdf``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    families = list(dict.fromkeys(optimal["noise"]))
    fig, axes = plt.subplots(1, len(families), figsize=(4.2 * len(families), 3.8), squeeze=False)
    for ax, noise in zip(axes[0], families, strict=True):
        sub = optimal[optimal["noise"] == noise]
        xs = np.linspace(0, sub["scale"].max() * 1.05, 50)
        for solver, grp in sub.groupby("solver", sort=False):
            color, marker = _STYLE.get(solver, ("C2", "^"))
            yerr = np.vstack(
                [
                    (grp["alpha_opt"] - grp["alpha_lo"]).clip(lower=0),
                    (grp["alpha_hi"] - grp["alpha_opt"]).clip(lower=0),
                ]
            )
            ax.errorbar(
                grp["scale"],
                grp["alpha_opt"],
                yerr=yerr,
                fmt="none",
                ecolor=color,
                alpha=0.6,
                capsize=2,
            )
            inner = grp[~grp["at_edge"]]
            edge = grp[grp["at_edge"]]
            ax.plot(
                inner["scale"], inner["alpha_opt"], marker, color=color, label=f"{solver} optimum"
            )
            ax.plot(
                edge["scale"],
                edge["alpha_opt"],
                marker,
                mfc="none",
                color=color,
                label=f"{solver}: grid edge" if len(edge) else None,
            )
            bad = grp[grp["artefact"]]
            if len(bad):
                ax.plot(bad["scale"], bad["alpha_opt"], "x", color="k", label="optimiser artefact")
            fit = fits[(fits["noise"] == noise) & (fits["solver"] == solver)]
            if len(fit) and np.isfinite(fit["slope"].iloc[0]):
                f = fit.iloc[0]
                r2 = f"{f['r2']:.3f}" if np.isfinite(f["r2"]) else "n/a"
                ax.plot(
                    xs,
                    f["slope"] * xs + f["intercept"],
                    "-",
                    color=color,
                    lw=1,
                    label=f"{solver} fit: {f['slope']:.3f}·s {f['intercept']:+.3f}, R²={r2}",
                )
        slope = sub["alpha_theory"].iloc[0] / sub["scale"].iloc[0]
        ax.plot(xs, slope * xs, "--", color="0.3", lw=1, label=f"theory: {slope:.3f}·s")
        ax.set_title(
            f"({'abc'[families.index(noise)] if families.index(noise) < 3 else ''}) {_TITLES.get(noise, noise)} noise"
        )
        ax.set_xlabel("noise scale s")
        ax.set_ylabel("optimal α")
        ax.set_xlim(left=0)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    out_dir = Path(out_dir)
    paths = [out_dir / "figure2.png", out_dir / "figure2.pdf"]
    for p in paths:
        fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return paths
