"""Tables 3 and 4 of the paper from a folder of runs: mAP per box-loss setting and its noise scales.

Every run folder holds ``config.yaml`` (the resolved config, so the ``params`` preset is
known exactly) and ``metrics.json``. Runs of the same detector, setting and data are
averaged (n is shown). Beside the mAPs stand the label- and prediction-noise scales that
``huberkl interpret`` reads from the same preset (Eq. 21, 26, 32), so the table shows what
each setting assumes about the boxes.

:data:`METRICS` and :func:`cell` are the one builder of the tables' mAP cells: the
reproduction report's Tables 3-6 (:mod:`huberkl.report.detection`) write theirs with them.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from huberkl.errors import InputError
from huberkl.params import COORDS, Preset, available_presets
from huberkl.tables import markdown_table

# The mAP columns of Tables 3 and 4, in the paper's order (COCOeval's keys).
METRICS = ("AP50", "AP75", "AP")
METRIC_COLS = ("@.5", "@.75", "@.5:.95")
HEADER = (
    "detector",
    "setting",
    "data",
    "n",
    "mAP@0.5",
    "mAP@0.75",
    "mAP@0.5:0.95",
    "stage",
    "label noise (x y w h)",
    "prediction noise (x y w h)",
)


@dataclass
class Row:
    detector: str
    setting: str
    data: str
    order: tuple[int, str]
    values: dict[str, list[float]] = field(default_factory=dict)
    noise: list[Noise] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def find_runs(root: Path) -> list[Path]:
    """Folders under ``root`` (itself included) that hold both metrics.json and config.yaml."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder")
    runs = sorted(
        p.parent for p in root.rglob("metrics.json") if (p.parent / "config.yaml").is_file()
    )
    if not runs:
        raise InputError(f"{root}: no runs found (folders with metrics.json and config.yaml)")
    return runs


@dataclass(frozen=True)
class Noise:
    """One stage's label and prediction noise scales (x, y, w, h) in anchor units."""

    stage: str
    label: list[Fraction]
    prediction: list[Fraction]

    def text(self, which: str) -> str:
        """The paper's notation, e.g. ``wa/9 ha/9 wa/9 ha/9``."""
        from huberkl.interpret import scale_text

        return " ".join(scale_text(v, c) for v, c in zip(getattr(self, which), COORDS, strict=True))


def noise_columns(preset: Preset, arch: str = "faster_rcnn") -> list[Noise]:
    """Label and prediction noise per stage the detector uses, in anchor units.

    RetinaNet's one head takes the preset's proposal stage (paper, Sec. 7.2).
    """
    from huberkl.interpret import read_preset, read_stage

    if arch == "retinanet":
        readings = [read_stage(preset.stage("proposal"), preset.form, "head")]
    else:
        readings = read_preset(preset)
    return [
        Noise(
            "head" if r.one_stage or arch == "retinanet" else r.stage,
            [r.scales.label[c] for c in COORDS],
            [r.scales.prediction[c] for c in COORDS],
        )
        for r in readings
    ]


def _data_label(cfg: dict[str, Any]) -> str:
    data = cfg.get("data", {})
    name = str(data.get("name", "?"))
    synth = data.get("synth") if name == "synth" else None
    if synth and synth.get("noise", "none") != "none":
        return f"{name} {synth['noise']} {synth.get('noise_scale')}"
    return name


def collect(root: Path) -> list[Row]:
    """One row per (detector, setting, data), metrics pooled over runs (seeds)."""
    paper = {n: i for i, n in enumerate(available_presets())}
    rows: dict[tuple[str, str, str], Row] = {}
    for run in find_runs(root):
        try:
            cfg = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
            metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise InputError(f"{run}: unreadable config.yaml or metrics.json ({exc})") from None
        preset = Preset.from_mapping(cfg.get("params", {}))
        model = cfg.get("detect", {}).get("model", {})
        arch = str(model.get("arch", "?"))
        detector = arch
        if model.get("backbone"):
            detector += f" {model['backbone']}"
        key = (detector, preset.name, _data_label(cfg))
        if key not in rows:
            rows[key] = Row(
                detector,
                preset.title or preset.name,
                key[2],
                (paper.get(preset.name, len(paper)), preset.name),
                {m: [] for m in METRICS},
                noise_columns(preset, arch),
            )
        for m in METRICS:
            if m in metrics:
                rows[key].values[m].append(float(metrics[m]))
        rows[key].runs.append(str(run))
    return sorted(rows.values(), key=lambda r: (r.detector, r.data, r.order))


def cell(values: Sequence[float], spread: str | None = "sd") -> str:
    """One mAP cell over runs as the paper prints it: the mean in percent, one decimal.

    With several runs, ``± spread``: ``sd`` their standard deviation (``summary.md``),
    ``ci95`` the half-width of the 95% t interval of the mean (the report's tables, over
    paired seeds), None none (the terminal table). No runs: ``-``.
    """
    if not values:
        return "-"
    if spread == "ci95":
        from huberkl import stats

        iv = stats.t_interval(values)
        mean, half = iv.mean, iv.half if iv.n > 1 else None
    else:
        mean = statistics.fmean(values)
        half = statistics.stdev(values) if spread == "sd" and len(values) > 1 else None
    if half is None:
        return f"{100 * mean:.1f}"
    return f"{100 * mean:.1f} ± {100 * half:.1f}"


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    """Flat rows for CSV/markdown: one line per stage, metrics on the stage's first line."""
    out = []
    for r in rows:
        for i, nz in enumerate(r.noise):
            first = i == 0
            out.append(
                [
                    r.detector if first else "",
                    r.setting if first else "",
                    r.data if first else "",
                    str(len(r.runs)) if first else "",
                    *(cell(r.values[m]) if first else "" for m in METRICS),
                    nz.stage,
                    nz.text("label"),
                    nz.text("prediction"),
                ]
            )
    return out


def to_csv(rows: Sequence[Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [
            "detector",
            "setting",
            "data",
            "n",
            "AP50",
            "AP75",
            "AP",
            "stage",
            "label_noise",
            "prediction_noise",
        ]
    )
    for r in rows:
        for nz in r.noise:
            means = [f"{statistics.fmean(r.values[m]):.4f}" if r.values[m] else "" for m in METRICS]
            w.writerow(
                [r.detector, r.setting, r.data, len(r.runs), *means, nz.stage]
                + [nz.text("label"), nz.text("prediction")]
            )
    return buf.getvalue()


def to_markdown(rows: Sequence[Row]) -> str:
    """``summary.md``: the rows of :func:`table_rows` under ``HEADER``."""
    return markdown_table(HEADER, table_rows(rows))


def _compact(scales: Sequence[Fraction]) -> str:
    """x, y, w, h scales in anchor units: ``1/9`` if all equal, ``1/20, 1/10`` if x = y and w = h."""
    x, y, w, h = (str(v) for v in scales)
    if x == y == w == h:
        return x
    if x == y and w == h:
        return f"{x}, {w}"
    return " ".join((x, y, w, h))


def rich_table(rows: Sequence[Row], title: str = ""):
    """The terminal view: constant columns go to the title, scales in compact form."""
    from rich import box
    from rich.table import Table

    detectors, data = {r.detector for r in rows}, {r.data for r in rows}
    parts = [title or "mAP (%, mean of n runs)"]
    if len(detectors) == 1:
        parts.append(next(iter(detectors)))
    if len(data) == 1:
        parts.append(next(iter(data)))
    table = Table(
        title=" · ".join(parts),
        caption="noise scales in anchor widths (x, w) / heights (y, h); 'a, b' = xy, wh",
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        collapse_padding=True,
        show_edge=False,
    )
    columns = ["detector"] if len(detectors) > 1 else []
    columns += ["data"] if len(data) > 1 else []
    columns += ["setting", "n", *METRIC_COLS, "stage", "label", "pred."]
    for h in columns:
        numeric = h.startswith("@") or h == "n"
        table.add_column(h, justify="right" if numeric else "left", no_wrap=True)
    for r in rows:
        for i, nz in enumerate(r.noise):
            first = i == 0
            cells = {
                "detector": r.detector if first else "",
                "data": r.data if first else "",
                "setting": r.setting if first else "",
                "n": str(len(r.runs)) if first else "",
                **{
                    c: cell(r.values[m], spread=None) if first else ""
                    for c, m in zip(METRIC_COLS, METRICS, strict=True)
                },
                "stage": nz.stage,
                "label": _compact(nz.label),
                "pred.": _compact(nz.prediction),
            }
            table.add_row(*(cells[c] for c in columns))
    return table


def summarize(root: str | Path, out_dir: str | Path | None = None) -> tuple[list[Row], Path]:
    """Collect the runs under ``root`` and write ``summary.csv`` and ``summary.md`` to ``out_dir``."""
    from huberkl import config

    root = Path(root)
    if root.exists() and not root.is_dir():  # before --out, which defaults to it
        raise InputError(f"{root}: is a file; give the sweep folder that holds the runs")
    out = config.check_writable(out_dir if out_dir is not None else root)
    rows = collect(root)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.csv").write_text(to_csv(rows), encoding="utf-8")
    (out / "summary.md").write_text(to_markdown(rows), encoding="utf-8")
    return rows, out
