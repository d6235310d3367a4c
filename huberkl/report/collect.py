"""Collect: what the steps left under ``outputs/reproduce/<scale>/``, read into plain data.

The report's first stage. Nothing here judges a claim or writes Markdown, so that the
verdicts (:mod:`huberkl.report.judge`) and the page (:mod:`huberkl.report.render`) can be
tested on made-up records, and a missing file is handled once: a section whose files are
absent reads as None ("not computed").
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huberkl import __version__
from huberkl.report.files import read_json


@dataclass(frozen=True)
class Provenance:
    """How a step's numbers were made: its command, time and folder (for the config link)."""

    argv: list[str]
    seconds: Any  # float when the step recorded one
    folder: Path
    has_config: bool


def provenance(root: Path, name: str, steps: Mapping[str, Any]) -> Provenance:
    """The step's ``.done.json`` record, or its planned command when it has none."""
    folder = root / name
    done = read_json(folder / ".done.json") or {}
    argv = done.get("argv") or (steps[name].argv(folder) if name in steps else [])
    return Provenance(argv, done.get("seconds"), folder, (folder / "config.yaml").is_file())


@dataclass(frozen=True)
class Bounds:
    """Figure 1's check of Eq. 20 on the plotted grid: per α, the largest
    ``D_{α,1/α} − H_α`` and ``H_α − D_{α/2,1/α}``, and the largest of each overall."""

    rows: list[tuple[float, float, float]]  # (α, lower − huber, huber − upper)
    lower: float
    upper: float


@dataclass(frozen=True)
class Figure1:
    image: Path
    bounds: Bounds | None  # None: no figure1.csv


def figure1(folder: Path) -> Figure1 | None:
    """``huberkl losses``'s figure and its bounds; None when the figure is missing."""
    image = folder / "figure1.png"
    if not image.is_file():
        return None
    csv = folder / "figure1.csv"
    if not csv.is_file():
        return Figure1(image, None)
    import pandas as pd

    df = pd.read_csv(csv)
    rows = [
        (a, (g["lower"] - g["huber"]).max(), (g["huber"] - g["upper"]).max())
        for a, g in df.groupby("alpha")
    ]
    lower = float((df["lower"] - df["huber"]).max())
    upper = float((df["huber"] - df["upper"]).max())
    return Figure1(image, Bounds(rows, lower, upper))


def tables12(folder: Path) -> list[dict] | None:
    """``huberkl interpret --format json``'s presets; None when not run or unreadable."""
    out = folder / "stdout.txt"
    if not out.is_file():
        return None
    try:
        data = json.loads(out.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    return data or None


@dataclass(frozen=True)
class Figure2:
    image: Path
    fit: Any  # DataFrame of the linear fits per noise family and solver, or None
    optimal: Any  # DataFrame of the per-scale optima, or None


def figure2(folder: Path) -> Figure2 | None:
    """``huberkl toy``'s figure, fit and optima; None when the figure is missing."""
    image = folder / "figure2.png"
    if not image.is_file():
        return None
    import pandas as pd

    fit = next((p for p in (folder / "fit.csv", folder / "linear_fit.csv") if p.is_file()), None)
    opt = folder / "optimal.csv"
    return Figure2(
        image,
        pd.read_csv(fit) if fit is not None else None,
        pd.read_csv(opt) if opt.is_file() else None,
    )


def measured_noise(root: Path, scale: float) -> dict[str, Any]:
    """``huberkl noise``'s measured label noise of a sweep set, per coordinate ({} if none)."""
    path = root / f"noise-{scale:g}" / "result.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text(encoding="utf-8")).get("coordinates", {})


@dataclass(frozen=True)
class StepTime:
    name: str
    title: str
    seconds: Any  # float when the step recorded one


def step_times(root: Path, steps: Iterable[Any]) -> list[StepTime]:
    """Each step's recorded duration, in plan order."""
    return [
        StepTime(s.name, s.title, (read_json(root / s.name / ".done.json") or {}).get("seconds"))
        for s in steps
    ]


@dataclass(frozen=True)
class PartStatus:
    """One part of ``scale.parts``: its training runs, those with a record, and the
    recorded training time of those (seconds, summed over runs)."""

    name: str
    total: int
    done: int
    seconds: float


def parts(root: Path, steps: Iterable[Any], plan: Any) -> list[PartStatus]:
    """Where the reproduction stands, part by part (none for a scale without parts)."""
    from huberkl.plan import in_part

    names = list(plan.scale.get("parts") or {}) if hasattr(plan, "scale") else []
    runs = [s for s in steps if s.seed is not None]
    done = {s.name: read_json(root / s.name / ".done.json") for s in runs}
    out = []
    for name in names:
        mine = [s for s in runs if in_part(s, plan, name)]
        records = [done[s.name] for s in mine if done[s.name] is not None]
        seconds = sum(float(r.get("seconds") or 0.0) for r in records)
        out.append(PartStatus(name, len(mine), len(records), seconds))
    return out


def machine() -> str:
    """The machine and versions the report was made with (the numbers' own runs say theirs)."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{platform.platform()}, {os.cpu_count()} CPU cores, GPU: {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, huberkl {__version__}"
    )


class Runs:
    """The metrics and run records of every detection step, by setting and seed."""

    def __init__(self, root: Path, steps: Iterable[Any]) -> None:
        self.root = root
        self.metrics: dict[str, dict[int, dict]] = {}
        self.step_of: dict[str, dict[int, str]] = {}
        for st in steps:
            if getattr(st, "seed", None) is None:
                continue
            m = read_json(root / st.name / "metrics.json")
            for name in [st.setting, *st.serves]:
                self.step_of.setdefault(name, {})[st.seed] = st.name
                if m:
                    self.metrics.setdefault(name, {})[st.seed] = m

    def values(self, setting: str, key: str) -> dict[int, float]:
        runs = self.metrics.get(setting, {})
        return {seed: float(m[key]) for seed, m in runs.items() if m.get(key) is not None}

    def seeds(self, setting: str) -> list[int]:
        return sorted(self.metrics.get(setting, {}))

    def planned(self, setting: str) -> list[int]:
        """The seeds the plan trains ``setting`` with (run or not)."""
        return sorted(self.step_of.get(setting, {}))

    def record(self, setting: str) -> tuple[dict, dict]:
        """``run.json`` and ``config.yaml`` of the setting's first run (empty when none)."""
        import yaml

        steps = self.step_of.get(setting, {})
        if not steps:
            return {}, {}
        d = self.root / steps[min(steps)]
        cfg = d / "config.yaml"
        return (
            read_json(d / "run.json") or {},
            yaml.safe_load(cfg.read_text(encoding="utf-8")) if cfg.is_file() else {},
        )
