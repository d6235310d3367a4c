"""Assemble the report from the step folders of ``outputs/reproduce/<scale>/``.

The flow is collect -> judge -> render: :mod:`~huberkl.report.collect` reads what the
steps wrote; each section (:mod:`~huberkl.report.theory`, then the detection section:
:mod:`~huberkl.report.detection` with :mod:`~huberkl.report.curve` and
:mod:`~huberkl.report.sweep`) judges its claims by the rules of
:mod:`~huberkl.report.judge` and writes its Markdown; :mod:`~huberkl.report.render`
assembles the page. Layout written to ``dest`` (``outputs/`` by default): ``report.md``,
``report.html`` (figures embedded), ``figures/*.png`` and ``tables/*.csv|json`` (one per
table).
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huberkl.report import collect, curve, detection, render, sweep, theory


def build_report(
    root: Path, steps: Sequence[Any], plan: Any, elapsed: float | None, dest: Path | None = None
) -> Path:
    """Write ``report.md``/``report.html`` (+ figures/, tables/) to ``dest``; returns the .md path."""
    dest = Path(dest) if dest is not None else root.parent.parent
    dest.mkdir(parents=True, exist_ok=True)
    doc = render.Document(root, dest, steps)
    theory.figure1(doc, collect.figure1(root / "figure1"))
    theory.tables12(doc, collect.tables12(root / "tables12"))
    theory.figure2(doc, collect.figure2(root / "figure2"))
    runs = collect.Runs(root, doc.steps.values())
    detection.intro(doc, runs, plan)
    detection.caveat(doc, curve.section(doc, runs, plan))
    detection.tables(doc, runs)
    sweep.section(doc, runs, plan)
    scale = plan.scale.name if hasattr(plan, "scale") else str(plan)
    text = render.page(
        doc,
        scale,
        made=_dt.datetime.now(),
        machine=collect.machine(),
        elapsed=elapsed,
        times=collect.step_times(root, steps),
        parts=collect.parts(root, steps, plan),
        jobs=int(plan.scale.get("jobs", 1)) if hasattr(plan, "scale") else 1,
    )
    return render.write(text, dest)
