"""The outputs of ``huberkl interpret``: JSON, CSV, Markdown and rich tables of readings."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from huberkl.interpret.fragments import fragments
from huberkl.interpret.readings import Reading, head_of, stage_label
from huberkl.interpret.scales import decimal_text, scale_text
from huberkl.params import COORDS, PAPER_PRESETS
from huberkl.tables import markdown_table

if TYPE_CHECKING:  # rich is imported lazily by the table builders
    from rich.table import Table

FORMATS = ("table", "json", "csv", "markdown")

# --------------------------------------------------------------------------- output formats


def to_json(
    readings: Sequence[Reading], preset: str | None, config: bool = False
) -> dict[str, Any]:
    """``{"preset": name or null, "stages": [...]}``; ``config`` adds framework fragments."""
    stages = []
    for r in readings:
        d = r.to_dict()
        if config:
            d["head"] = head_of(r)
            d["config"] = fragments(r.params, r.form, head_of(r))
        stages.append(d)
    return {"preset": preset, "stages": stages}


def render_json(groups: Sequence[tuple[str | None, list[Reading]]], config: bool = False) -> str:
    """One object for one preset (or custom settings), a list of them for ``--preset all``."""
    objs = [to_json(rs, name, config) for name, rs in groups]
    return json.dumps(objs[0] if len(objs) == 1 else objs, indent=2, ensure_ascii=False) + "\n"


CSV_FIELDS = (
    "preset", "stage", "form", "loss", "lambda", "alpha", "coordinate", "sigma",
    "label_noise", "prediction_noise", "label_noise_text", "prediction_noise_text",
)  # fmt: skip


def render_csv(readings: Sequence[Reading]) -> str:
    """Long format: one row per preset, stage and coordinate (exact values as fractions)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for r in readings:
        p, s = r.params, r.scales
        for c in COORDS:
            writer.writerow([
                r.preset or "", r.stage, r.form, p.loss, str(p.lam), str(p.effective_alpha), c,
                str(p.sigma[c]), str(s.label[c]), str(s.prediction[c]),
                scale_text(s.label[c], c), scale_text(s.prediction[c], c),
            ])  # fmt: skip
    return buf.getvalue()


ROW_NAMES = {"label": ("x*", "y*", "w*", "h*"), "prediction": ("x̃", "ỹ", "w̃", "h̃")}


def table2_rows(readings: Sequence[Reading]) -> list[list[str]]:
    """Table 2's body: rows x*, y*, w*, h* (label) then x̃, ỹ, w̃, h̃ (prediction)."""
    rows = []
    for kind in ("label", "prediction"):
        for c, name in zip(COORDS, ROW_NAMES[kind], strict=True):
            rows.append([name, *(scale_text(getattr(r.scales, kind)[c], c) for r in readings)])
    return rows


def table1_rows(readings: Sequence[Reading]) -> list[list[str]]:
    """Table 1's body: λ, α, σx, σy, σw, σh per stage, plus the loss and its form."""
    rows = [
        ["loss", *(r.params.loss for r in readings)],
        ["form", *(r.form for r in readings)],
        ["λ", *(str(r.params.lam) for r in readings)],
        ["α", *(str(r.params.effective_alpha) for r in readings)],
    ]
    rows += [[f"σ{c}", *(str(r.params.sigma[c]) for r in readings)] for c in COORDS]
    return rows


def _headers(readings: Sequence[Reading]) -> list[str]:
    return [f"{r.title or r.preset or 'custom'} · {stage_label(r)}" for r in readings]


def render_markdown(groups: Sequence[tuple[str | None, list[Reading]]]) -> str:
    """Markdown: Table 1 and Table 2 side by side for all presets, or per-stage tables."""
    readings = [r for _, rs in groups for r in rs]
    if len(groups) > 1:
        heads = ["", *_headers(readings)]
        return "\n".join([
            "**Settings (Table 1)**\n",
            markdown_table(heads, table1_rows(readings)),
            "**Noise scales (Table 2)**\n",
            markdown_table(heads, table2_rows(readings)),
        ])  # fmt: skip
    return "\n".join(
        f"**{_title(r)}**\n\n" + markdown_table(_STAGE_COLS, _stage_rows(r)) for r in readings
    )


_STAGE_COLS = ["coordinate", "σ", "label noise", "≈", "prediction noise", "≈"]


def _stage_rows(r: Reading) -> list[list[str]]:
    s = r.scales
    return [
        [
            c,
            str(r.params.sigma[c]),
            scale_text(s.label[c], c),
            decimal_text(s.label[c]),
            scale_text(s.prediction[c], c),
            decimal_text(s.prediction[c]),
        ]
        for c in COORDS
    ]


def _title(r: Reading) -> str:
    p = r.params
    name = f"{r.title or r.preset} · {stage_label(r)}" if r.preset else "custom settings"
    formula = (
        "λ·|t − t̃*|" if p.loss == "l1" else {"smooth-l1": "(λ/α)·H_α", "huber": "λ·H_α"}[r.form]
    )
    if p.loss == "kl":
        formula += " with H_α -> D_{α/2,1/α}"
    extra = f", normaliser: {p.normaliser}" if p.normaliser else ""
    return f"{name}: λ = {p.lam}, α = {p.effective_alpha} ({p.loss}, {formula}{extra})"


def sections(readings: Sequence[Reading]) -> list[tuple[str, list[Reading]]]:
    """Split readings into the paper's presets (Tables 1 and 2) and everything else."""
    paper = [r for r in readings if r.preset in PAPER_PRESETS]
    other = [r for r in readings if r.preset not in PAPER_PRESETS]
    out = []
    if paper:
        out.append(("The paper's settings (Table 1) and their noise scales (Table 2)", paper))
    if other:
        out.append(("Framework defaults and other settings", other))
    return out


def rich_tables(groups: Sequence[tuple[str | None, list[Reading]]]) -> list[Table]:
    """rich tables: per-stage tables for one preset; settings + Table 2 rows for several."""
    from rich.table import Table

    readings = [r for _, rs in groups for r in rs]
    tables = []
    if len(groups) > 1:
        for title, rs in sections(readings):
            t = Table(title=title, caption="noise scales in anchor units (w_a, h_a)")
            t.add_column("", style="bold", no_wrap=True)
            for r in rs:
                t.add_column(f"{r.preset}\n{stage_label(r).lower()}", justify="center")
            settings, scales = table1_rows(rs), table2_rows(rs)
            for i, row in enumerate(settings):
                t.add_row(*row, end_section=i == len(settings) - 1)
            for i, row in enumerate(scales):
                t.add_row(*row, end_section=i == 3)
            tables.append(t)
        return tables
    for r in readings:
        t = Table(title=_title(r))
        for i, col in enumerate(_STAGE_COLS):
            t.add_column(col, justify="left" if i == 0 else "right", no_wrap=True)
        for row in _stage_rows(r):
            t.add_row(*row)
        tables.append(t)
    return tables
