"""``huberkl noise`` output: rich tables, JSON and CSV of a measurement (measure.py's dict)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from huberkl.distributions import FAMILIES
from huberkl.schema import NOISE_FORMATS

FORMATS = NOISE_FORMATS  # `huberkl noise --format` (noise.format), checked by NoiseSchema


def render_json(result: dict[str, Any]) -> str:
    from huberkl.noise.measure import public

    return json.dumps(public(result), indent=2, ensure_ascii=False) + "\n"


def render_csv(result: dict[str, Any]) -> str:
    """Long format: one row per coordinate and family (chosen marks the picked one)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["coordinate", "family", "scale", "loc", "loglik", "chosen", "ci95_lo", "ci95_hi"])
    for c, info in result["coordinates"].items():
        ci = info.get("ci95") or [math.nan, math.nan]
        fits = info["fits"] or {
            info["family"]: {"scale": info["scale"], "loc": 0.0, "loglik": math.nan}
        }
        for f, fit in fits.items():
            chosen = f == info["family"]
            w.writerow([
                c, f, repr(fit["scale"]), repr(fit["loc"]), repr(fit["loglik"]), int(chosen),
                repr(ci[0]) if chosen else "", repr(ci[1]) if chosen else "",
            ])  # fmt: skip
    return buf.getvalue()


def _g(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def rich_tables(result: dict[str, Any]) -> list:
    from rich.table import Table

    tables = []
    src = result["source"]
    head = (
        f"matched {result['matched']}, unmatched {result['unmatched']} ({result['mode']} reference)"
        if "matched" in result
        else f"{result.get('n', '')} values"
        if "n" in result
        else f"mean IoU {src.get('iou_agreement')}"
    )
    t = Table(
        title=f"Label noise per coordinate: {head}",
        caption="scale: scipy.stats scale of one annotation's error",
    )
    t.add_column("coordinate", style="bold")
    t.add_column("family")
    t.add_column("scale", justify="right")
    t.add_column("95% CI", justify="right")
    for f in FAMILIES:
        t.add_column(f"{f}\nscale · loglik", justify="right")
    for c, info in result["coordinates"].items():
        ci = info.get("ci95")
        cells = []
        for f in FAMILIES:
            fit = info["fits"].get(f)
            mark = " *" if f == info["family"] else ""
            cells.append(f"{_g(fit['scale'])} · {fit['loglik']:.1f}{mark}" if fit else "-")
        ci_text = f"{_g(ci[0])} – {_g(ci[1])}" if ci else "-"
        t.add_row(c, info["family"], _g(info["scale"]), ci_text, *cells)
    tables.append(t)
    s = result.get("settings", {})
    if "paper" in s:
        t = Table(
            title=f"Settings read off (prediction noise: {s['pred_noise'] or s['preset'] + ' ratios'})"
        )
        for col in ("reading", "stage", "loss", "α", "λ", "σx", "σy", "σw", "σh", "note"):
            t.add_column(col)
        for reading in ("paper", "efficient"):
            for r in s[reading]:
                p = r["settings"]
                if p is None:
                    t.add_row(reading, r["stage"], *["-"] * 7, r["note"])
                    continue
                ex = p["exact"]
                t.add_row(
                    reading, r["stage"], p["loss"], ex["alpha"], ex["lambda"],
                    *(ex["sigma"][c] for c in "xywh"), r["note"],
                )  # fmt: skip
        tables.append(t)
        alpha = s["efficient_alpha"]
        t = Table(title="Efficient Huber transition per coordinate (residual units, toy theory)")
        t.add_column("coordinate")
        t.add_column("α*", justify="right")
        for c, a in alpha.items():
            t.add_row(c, "∞ (least squares)" if a is None else ("0 (L1)" if a == 0 else _g(a)))
        tables.append(t)
    elif "efficient_alpha" in s:
        t = Table(title="Efficient Huber transition (toy theory)", show_header=False)
        a = s["efficient_alpha"]
        t.add_row("α*", "∞ (least squares)" if a is None else _g(a))
        t.add_row("loss", s["loss"])
        t.add_row("why", s["note"])
        tables.append(t)
    return tables
