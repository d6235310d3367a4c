"""Figure 1 of the paper: H_α between its bounds D_{α,1/α} and D_{α/2,1/α} (Eq. 20).

One row per α; the left panel shows the three losses, the right panel their derivatives
(Eq. 44 for D, clamp(x, −α, α) for H_α). :func:`compute` gives the plotted values as a
table (also written as CSV, so the figure can be checked number by number), :func:`plot`
draws it with matplotlib's Agg canvas (no display, no global backend switch), and
:func:`write` does both into one folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from huberkl import losses
from huberkl.errors import InputError

COLUMNS = ("alpha", "x", "huber", "lower", "upper", "d_huber", "d_lower", "d_upper")
FORMATS = ("png", "pdf", "svg")


def _check_alphas(alphas: Sequence[float]) -> list[float]:
    if isinstance(alphas, (str, bytes)) or not isinstance(alphas, Sequence) or not alphas:
        raise InputError(f"alphas must be a non-empty list of numbers > 0, got {alphas!r}")
    for a in alphas:
        losses._check_positive("alpha", a)
    return [float(a) for a in alphas]


def validate(
    alphas: Sequence[float] = (0.1, 1.0, 10.0),
    span: float = 3.0,
    num_points: int = 401,
    x_max: float | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
) -> None:
    """Check every argument of :func:`write` (ValueError naming the bad one), before any work.

    For library callers: the CLI's ``losses`` config is checked at compose by
    :class:`huberkl.schema.LossesSchema`, which does not run when Python calls :func:`write`.
    """
    _check_alphas(alphas)
    losses._check_positive("span", span)
    if x_max is not None:
        losses._check_positive("x_max", x_max)
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise InputError(f"num_points must be an integer >= 2, got {num_points!r}")
    if isinstance(formats, (str, bytes)) or not formats or any(f not in FORMATS for f in formats):
        raise InputError(f"formats must be a list from {'|'.join(FORMATS)}, got {formats!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi <= 0:
        raise InputError(f"dpi must be an integer > 0, got {dpi!r}")


def compute(
    alphas: Sequence[float] = (0.1, 1.0, 10.0),
    span: float = 3.0,
    num_points: int = 401,
    x_max: float | None = None,
) -> pd.DataFrame:
    """The plotted values, one block of ``num_points`` rows per α (columns: ``COLUMNS``).

    x runs over [−span·α, span·α] (so every row shows the quadratic zone |x| ≤ α and the
    linear tails alike) or over [−x_max, x_max] for all rows when ``x_max`` is given.
    Derivatives come from autograd through :mod:`huberkl.losses`, i.e. the same code a
    training loop differentiates.
    """
    validate(alphas, span, num_points, x_max)
    alphas = [float(a) for a in alphas]
    blocks = []
    for a in alphas:
        half = float(x_max) if x_max is not None else float(span) * a
        x = torch.linspace(-half, half, num_points, dtype=torch.float64)
        x = ((x - x.flip(0)) / 2).requires_grad_(True)  # exactly symmetric: x = 0 is on it
        values = {
            "huber": losses.huber(x, a),
            "lower": losses.huber_lower_bound(x, a),  # D_{α,1/α}
            "upper": losses.huber_upper_bound(x, a),  # D_{α/2,1/α}
        }
        block = {"alpha": np.full(num_points, a), "x": x.detach().numpy()}
        for name, y in values.items():
            (grad,) = torch.autograd.grad(y.sum(), x)
            block[name] = y.detach().numpy()
            block[f"d_{name}"] = grad.numpy()
        blocks.append(pd.DataFrame(block, columns=list(COLUMNS)))
    return pd.concat(blocks, ignore_index=True)


def _label(a: float) -> str:
    return f"{a:g}"


def plot(
    table: pd.DataFrame,
    stem: str | Path,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
) -> list[Path]:
    """Draw ``table`` (from :func:`compute`) as the paper's Figure 1; save ``stem.<fmt>``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    validate(alphas=[1.0], formats=formats, dpi=dpi)
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
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        # No creation date in the PDF/SVG: the same config gives the same bytes.
        meta = {"CreationDate": None} if fmt == "pdf" else {"Date": None} if fmt == "svg" else {}
        fig.savefig(path, format=fmt, dpi=dpi, metadata=meta)
        paths.append(path)
    return paths


def write(
    out_dir: str | Path,
    alphas: Sequence[float] = (0.1, 1.0, 10.0),
    span: float = 3.0,
    num_points: int = 401,
    x_max: float | None = None,
    formats: Sequence[str] = ("png", "pdf"),
    dpi: int = 150,
) -> dict[str, Path]:
    """Compute, save ``figure1.csv`` and draw ``figure1.<fmt>`` in ``out_dir``."""
    validate(alphas, span, num_points, x_max, formats, dpi)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = compute(alphas, span, num_points, x_max)
    csv = out_dir / "figure1.csv"
    table.to_csv(csv, index=False)  # shortest round-trip repr: exact float64 values
    paths = {"csv": csv}
    for path in plot(table, out_dir / "figure1", formats, dpi):
        paths[path.suffix[1:]] = path
    return paths
