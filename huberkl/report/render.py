"""Render: the report's Markdown, assembled section by section, and its one-file HTML page.

The sections write into a :class:`Document` (Markdown parts and the claims judged so far);
:func:`page` puts the head, the claims table, the sections and the step times together, and
:func:`write` saves it as ``report.md`` and a self-contained ``report.html``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huberkl.report import collect, paper
from huberkl.report.files import link, save_table
from huberkl.tables import markdown_table

# The HTML page's style sheet, inlined so that report.html is one file.
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:1em 0;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px}"
    "th{background:#f3f3f3}img{max-width:100%}code{background:#f6f6f6;padding:1px 3px}"
)


class Document:
    """The report being written: its Markdown sections in order and the claims' verdicts
    (``(claim, verdict, evidence)``, in the order the claims table lists them)."""

    def __init__(self, root: Path, dest: Path, steps: Sequence[Any]) -> None:
        self.root, self.dest = root, dest
        self.steps = {s.name: s for s in steps}
        self.parts: list[str] = []
        self.claims: list[tuple[str, str, str]] = []
        self.protocol = ""  # what was trained, from the run records (detection.intro)
        self.caveat = ""  # set when the learning curves show the protocol is not converged

    def add(self, text: str) -> None:
        self.parts.append(text.rstrip() + "\n")

    def provenance(self, name: str) -> str:
        """The command that made a section's numbers and a link to its resolved config."""
        return provenance_line(collect.provenance(self.root, name, self.steps), self.dest)


def provenance_line(p: collect.Provenance, dest: Path) -> str:
    rel = link(p.folder, dest)
    took = f", {p.seconds:.0f} s" if isinstance(p.seconds, (int, float)) else ""
    where = (
        f"[config.yaml]({rel}/config.yaml)" if p.has_config else f"[stdout.txt]({rel}/stdout.txt)"
    )
    return f"<sub>`{' '.join(p.argv)}` — {where}{took}</sub>\n"


def claims_section(doc: Document) -> str:
    """Every verdict, then the claims this protocol cannot test (also ``tables/claims``)."""
    rows = [[c, v, e] for c, v, e in doc.claims]
    rows += [[c, "cannot test", why] for c, why in paper.UNTESTABLE]
    save_table(doc.dest, "claims", ["claim", "verdict", "evidence"], rows)
    return (
        "## What the results say about the paper's claims\n\n"
        + doc.caveat
        + markdown_table(["claim", "verdict", "evidence"], rows)
    )


def step_times(times: Sequence[collect.StepTime]) -> tuple[str, float]:
    """The steps' table and their total seconds (a step without a record counts 0)."""
    rows, total = [], 0.0
    for t in times:
        total += t.seconds or 0.0
        secs = f"{t.seconds:.0f}" if isinstance(t.seconds, (int, float)) else "–"
        rows.append([t.name, t.title, secs])
    return markdown_table(["step", "what", "seconds"], rows), total


def page(
    doc: Document,
    scale: str,
    made: _dt.datetime,
    machine: str,
    elapsed: float | None,
    times: Sequence[collect.StepTime],
    parts: Sequence[collect.PartStatus] = (),
    jobs: int = 1,
) -> str:
    """The whole report's Markdown: head, differences, claims, sections, parts, steps, rerunning."""
    table, compute = step_times(times)
    head = [
        "# huberkl: the paper's tables and figures, regenerated\n",
        "Paper: G. P. Meyer, *An Alternative Probabilistic Interpretation of the Huber Loss*, CVPR 2021. "
        f"Scale **{scale}**; made {made.strftime('%Y-%m-%d %H:%M')} on {machine}. "
        + (
            f"This run took {elapsed / 60:.1f} min (cached steps not re-timed). "
            if elapsed is not None
            else ""
        )
        + f"The steps' own times add up to {compute / 60:.1f} min (two training runs at a time).\n",
        paper.SMOKE_WARNING if scale == "smoke" else "",
        paper.differences(doc.protocol),
        claims_section(doc),
    ]
    return "\n".join(
        [
            *head,
            *doc.parts,
            parts_section(parts, jobs),
            "## Steps and their times\n",
            table,
            paper.RERUN.format(scale=scale),
        ]
    )


def parts_section(parts: Sequence[collect.PartStatus], jobs: int) -> str:
    """Where a reproduction built a part at a time stands, and the command for what is left."""
    if not parts:
        return ""
    left = [p for p in parts if p.done < p.total]
    rows = [
        [
            p.name,
            f"{p.done} of {p.total}",
            f"{p.seconds / 60 / max(1, jobs):.0f}" if p.done else "–",
            f"`make reproduce PART={p.name}`" if p.done < p.total else "done",
        ]
        for p in parts
    ]
    table = markdown_table(
        ["part", "training runs with records", f"their wall time (min, {jobs} at a time)", "to do"],
        rows,
    )
    nxt = (
        f"`make reproduce` trains the next part with runs left: **{left[0].name}**."
        if left
        else "Every part is done."
    )
    return (
        "## The reproduction's parts\n\n"
        "The CPU reproduction is built a part at a time (docs/PROTOCOL.md); a run's record is "
        "kept whether it was trained here or taken from the committed reference. "
        f"{nxt}\n\n{table}"
    )


def write(text: str, dest: Path) -> Path:
    """``dest/report.md`` and ``dest/report.html``; returns the .md path."""
    md = dest / "report.md"
    md.write_text(text, encoding="utf-8")
    write_html(text, dest / "report.html", dest)
    return md


def write_html(text: str, path: Path, base: Path) -> None:
    """Markdown -> one self-contained HTML file (figures inlined as data URIs), so the
    page can be mailed or opened from anywhere without its figures/ folder."""
    import markdown

    def inline(match: re.Match) -> str:
        src = base / match.group(2)
        if not src.is_file():
            return match.group(0)
        data = base64.b64encode(src.read_bytes()).decode()
        return f"![{match.group(1)}](data:image/png;base64,{data})"

    body = markdown.markdown(
        re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", inline, text), extensions=["tables", "fenced_code"]
    )
    path.write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>huberkl report</title><style>{STYLE}</style></head><body>{body}</body></html>\n",
        encoding="utf-8",
    )
