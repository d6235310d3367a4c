"""Tables 3 and 4 of the paper from a folder of runs: mAP per box-loss setting and its noise scales.

Every run folder holds ``config.yaml`` (the resolved config, so the ``params`` preset is
known exactly) and ``metrics.json``. Runs of the same detector, setting and data are
averaged (n is shown). Beside the mAPs stand the label- and prediction-noise scales that
``huberkl interpret`` reads from the same preset (Eq. 21, 26, 32), so the table shows what
each setting assumes about the boxes.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from huberkl.errors import InputError
from huberkl.params import COORDS, Preset, available_presets

METRICS = ("AP50", "AP75", "AP")
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
    noise: list[tuple[str, str, str]] = field(default_factory=list)  # (stage, label, prediction)
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


def noise_columns(preset: Preset) -> list[tuple[str, str, str]]:
    """(stage, label noise, prediction noise) per stage, in anchor units (w_a, h_a)."""
    from huberkl.interpret import read_preset, scale_text

    out = []
    for r in read_preset(preset):
        label = [scale_text(r.scales.label[c], c) for c in COORDS]
        pred = [scale_text(r.scales.prediction[c], c) for c in COORDS]
        stage = "head" if r.one_stage else r.stage
        out.append((stage, " ".join(label), " ".join(pred)))
    return out


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
            cfg = yaml.safe_load((run / "config.yaml").read_text())
            metrics = json.loads((run / "metrics.json").read_text())
        except (yaml.YAMLError, json.JSONDecodeError) as exc:
            raise InputError(f"{run}: unreadable config.yaml or metrics.json ({exc})") from None
        preset = Preset.from_mapping(cfg.get("params", {}))
        model = cfg.get("detect", {}).get("model", {})
        detector = str(model.get("arch", "?"))
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
                noise_columns(preset),
            )
        for m in METRICS:
            if m in metrics:
                rows[key].values[m].append(float(metrics[m]))
        rows[key].runs.append(str(run))
    return sorted(rows.values(), key=lambda r: (r.detector, r.data, r.order))


def _fmt(values: Sequence[float]) -> str:
    """Percent like the paper; mean ± sd over runs when there are several."""
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def table_rows(rows: Sequence[Row]) -> list[list[str]]:
    """Flat rows for CSV/markdown: one line per stage, metrics on the stage's first line."""
    out = []
    for r in rows:
        for i, (stage, label, pred) in enumerate(r.noise):
            first = i == 0
            out.append(
                [
                    r.detector if first else "",
                    r.setting if first else "",
                    r.data if first else "",
                    str(len(r.runs)) if first else "",
                    *(_fmt(r.values[m]) if first else "" for m in METRICS),
                    stage,
                    label,
                    pred,
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
        for stage, label, pred in r.noise:
            means = [f"{statistics.fmean(r.values[m]):.4f}" if r.values[m] else "" for m in METRICS]
            w.writerow([r.detector, r.setting, r.data, len(r.runs), *means, stage, label, pred])
    return buf.getvalue()


def to_markdown(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table_rows(rows)]
    return "\n".join(lines) + "\n"


def rich_table(rows: Sequence[Row], title: str = ""):
    from rich.table import Table

    table = Table(title=title or "mAP per box-loss setting (noise scales in anchor units)")
    for h in HEADER:
        table.add_column(h, justify="right" if h.startswith(("mAP", "n")) else "left")
    for cells in table_rows(rows):
        table.add_row(*cells)
    return table


def summarize(root: str | Path, out_dir: str | Path | None = None) -> tuple[list[Row], Path]:
    """Collect the runs under ``root`` and write ``summary.csv`` and ``summary.md`` to ``out_dir``."""
    root = Path(root)
    rows = collect(root)
    out = Path(out_dir) if out_dir is not None else root
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.csv").write_text(to_csv(rows))
    (out / "summary.md").write_text(to_markdown(rows))
    return rows, out
