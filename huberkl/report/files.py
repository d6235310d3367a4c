"""The report's file helpers: a leaf module (no huberkl import) every section may use."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def read_json(path: Path) -> Any:
    """The JSON at ``path``, or None when there is no such file (a step not run)."""
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def save_table(dest: Path, name: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """``dest/tables/<name>.csv`` and ``.json``: every report table, machine-readable."""
    import pandas as pd

    tables = dest / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([list(r) for r in rows], columns=list(header))
    frame.to_csv(tables / f"{name}.csv", index=False)
    frame.to_json(tables / f"{name}.json", orient="records", indent=1, force_ascii=False)


def link(target: Path, start: Path) -> str:
    """A relative link for Markdown/HTML: POSIX separators on every OS (a Windows relpath
    has backslashes, which browsers and Markdown renderers do not follow)."""
    return os.path.relpath(target, start).replace(os.sep, "/")


def copy_figure(dest: Path, src: Path, name: str) -> str | None:
    """Copy a step's figure into ``dest/figures/``; its report link, or None if missing."""
    if not src.is_file():
        return None
    figs = dest / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, figs / name)
    return f"figures/{name}"


def save_figure(fig: Any, path: Path, dpi: int = 120) -> None:
    """Lay out a matplotlib figure, write it to ``path`` (folders made) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
