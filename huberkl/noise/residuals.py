"""Residuals of a pilot regression fit: their family, scale and the best Huber transition.

For plain regression: the residuals of a first fit stand in for the label noise; the
family and scale are fitted as for boxes (gold mode, one coordinate) and the efficient α
is κ·scale from the toy's asymptotic theory (huberkl.noise.settings.efficiency_factor).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from huberkl.errors import InputError


def read_residuals(path: str | Path, column: str = "r") -> np.ndarray:
    """Column ``column`` of a CSV file as floats; NaN, text or a missing column is an error."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise InputError(f"residuals file {str(p)!r} does not exist")
    try:
        df = pd.read_csv(p, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a CSV file ({exc.__class__.__name__})") from None
    if column not in df.columns:
        raise InputError(
            f"{p}: no column {column!r}; columns are {', '.join(map(str, df.columns))} "
            "(choose one with --column)"
        )
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{p}: column {column!r} has {int(bad.sum())} NaN, infinite or non-numeric "
            f"value(s), first at data row {i + 1} ({df[column].iloc[i]!r})"
        )
    if len(values) < 2:
        raise InputError(f"{p}: column {column!r} needs at least 2 residuals, got {len(values)}")
    return values
