"""The errors' histograms with the four fitted densities, one panel per coordinate (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from huberkl.distributions import FAMILIES
from huberkl.noise.fit import law

COLOURS = {"laplace": "C0", "gaussian": "C1", "logistic": "C2", "cauchy": "C3"}


def plot_errors(result: dict[str, Any], path: Path) -> Path:
    """Histogram (central 99 % of the errors) and each family's fitted density per coordinate.

    The densities are the fitted laws themselves; with a matching threshold the histogram
    also lacks the tails that matching cut off (the fits account for that, the plot does not).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    errors = np.asarray(result["_errors"], dtype=np.float64)
    coords = list(result["coordinates"])
    mode = result.get("mode", "gold")
    cols = min(len(coords), 2)
    rows = (len(coords) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for i, c in enumerate(coords):
        ax = axes[i // cols][i % cols]
        x = errors[:, i]
        lo, hi = np.quantile(x, [0.005, 0.995])
        bins = int(np.clip(2 * np.sqrt(len(x)), 10, 60))
        ax.hist(x[(x >= lo) & (x <= hi)], bins=bins, density=True, color="0.8", label="errors")
        grid = np.linspace(lo, hi, 400)
        info = result["coordinates"][c]
        for f in FAMILIES:
            fit = info["fits"].get(f)
            if not fit:
                continue
            chosen = f == info["family"]
            ax.plot(
                grid,
                np.exp(law(f, mode).logpdf_at(grid, fit["loc"], fit["scale"])),
                color=COLOURS[f],
                lw=2.2 if chosen else 1.1,
                ls="-" if chosen else "--",
                label=f"{f} {fit['scale']:.3g}" + (" *" if chosen else ""),
            )
        ax.set_title(f"{c} ({mode}; scale per annotation)")
        ax.legend(fontsize=7)
    for j in range(len(coords), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
