"""Figure 1 of the paper: H_α between its bounds D_{α,1/α} and D_{α/2,1/α} (Eq. 20).

One row per α; the left panel shows the three losses, the right panel their derivatives
(Eq. 44 for D, clamp(x, −α, α) for H_α). :func:`compute` gives the plotted values as a
table (also written as CSV, so the figure can be checked number by number), :func:`plot`
draws it with matplotlib's Agg canvas (no display, no global backend switch), and
:func:`write` does both into one folder. They take a :class:`huberkl.schema.LossesSchema`
(``conf/losses/*.yaml``), the one home of the settings' defaults and checks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from huberkl import losses
from huberkl.schema import LossesSchema

COLUMNS = ("alpha", "x", "huber", "lower", "upper", "d_huber", "d_lower", "d_upper")


def compute(settings: LossesSchema | None = None) -> pd.DataFrame:
    """The plotted values, one block of ``num_points`` rows per α (columns: ``COLUMNS``).

    x runs over [−span·α, span·α] (so every row shows the quadratic zone |x| ≤ α and the
    linear tails alike) or over [−x_max, x_max] for all rows when ``x_max`` is given.
    Derivatives come from autograd through :mod:`huberkl.losses`, i.e. the same code a
    training loop differentiates. ``settings`` (checked when made): the defaults if None.
    """
    conf = settings if settings is not None else LossesSchema()
    blocks = []
    for a in conf.alphas:
        half = float(conf.x_max) if conf.x_max is not None else float(conf.span) * a
        x = torch.linspace(-half, half, conf.num_points, dtype=torch.float64)
        x = ((x - x.flip(0)) / 2).requires_grad_(True)  # exactly symmetric: x = 0 is on it
        values = {
            "huber": losses.huber(x, a),
            "lower": losses.huber_lower_bound(x, a),  # D_{α,1/α}
            "upper": losses.huber_upper_bound(x, a),  # D_{α/2,1/α}
        }
        block = {"alpha": np.full(conf.num_points, a), "x": x.detach().numpy()}
        for name, y in values.items():
            (grad,) = torch.autograd.grad(y.sum(), x)
            block[name] = y.detach().numpy()
            block[f"d_{name}"] = grad.numpy()
        blocks.append(pd.DataFrame(block, columns=list(COLUMNS)))
    return pd.concat(blocks, ignore_index=True)


def _label(a: float) -> str:
    return f"{a:g}"


def plot(table: pd.DataFrame, stem: str | Path, settings: LossesSchema | None = None) -> list[Path]:
    """Draw ``table`` (from :func:`compute`) as the paper's Figure 1; save ``stem.<fmt>``
    for each of ``settings.formats`` at ``settings.dpi`` (the defaults if None)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    conf = settings if settings is not None else LossesSchema()
    alphas = list(dict.fromkeys(table["alpha"].tolist()))
    fig = Figure(figsize=(9.0, 2.6 * len(alphas)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(alphas), 2, squeeze=False)
    for row, a in enumerate(alphas):
        t = table[table["alpha"] == a]
        s = _label(a)
        left, right = axes[row]
        left.plot(t["x"], t["huber"], color="black", lw=1.6, label=rf"$H_{{{s}}}$")
        left.plot(t["x"], t["lower"], "--", color="tab:blue", label=rf"$D_{{{s},1/{s}}}$")
        left.plot(t["x"], t["upper"], ":", color="tab:red", lw=1.8, label=rf"$D_{{{s}/2,1/{s}}}$")
        right.plot(t["x"], t["d_huber"], color="black", lw=1.6, label=rf"$H'_{{{s}}}$")
        right.plot(t["x"], t["d_lower"], "--", color="tab:blue", label=rf"$D'_{{{s},1/{s}}}$")
        right.plot(
            t["x"], t["d_upper"], ":", color="tab:red", lw=1.8, label=rf"$D'_{{{s}/2,1/{s}}}$"
        )
        left.set_ylabel(rf"$\alpha = {s}$")
        for ax in (left, right):
            ax.axvline(-a, color="0.85", lw=0.8, zorder=0)
            ax.axvline(a, color="0.85", lw=0.8, zorder=0)
            ax.grid(alpha=0.3)
        left.legend(fontsize=8, loc="upper center")
        right.legend(fontsize=8, loc="upper left")
    axes[0, 0].set_title("Loss Functions")
    axes[0, 1].set_title("Derivatives")
    axes[-1, 0].set_xlabel("x")
    axes[-1, 1].set_xlabel("x")
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in conf.formats:
        path = stem.with_suffix(f".{fmt}")
        # No creation date in the PDF/SVG: the same config gives the same bytes.
        meta = {"CreationDate": None} if fmt == "pdf" else {"Date": None} if fmt == "svg" else {}
        fig.savefig(path, format=fmt, dpi=conf.dpi, metadata=meta)
        paths.append(path)
    return paths


def write(out_dir: str | Path, settings: LossesSchema | None = None) -> dict[str, Path]:
    """Compute, save ``figure1.csv`` and draw ``figure1.<fmt>`` in ``out_dir``.

    ``settings`` were checked when the :class:`~huberkl.schema.LossesSchema` was made (the
    defaults if None), so a bad one never leaves a half-written folder.
    """
    conf = settings if settings is not None else LossesSchema()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = compute(conf)
    csv = out_dir / "figure1.csv"
    table.to_csv(csv, index=False)  # shortest round-trip repr: exact float64 values
    paths = {"csv": csv}
    for path in plot(table, out_dir / "figure1", conf):
        paths[path.suffix[1:]] = path
    return paths
