"""Figure 1, Tables 1-2 and Figure 2: the sections whose claims need no detector.

Each takes what :mod:`~huberkl.report.collect` read (None: the step has not run), adds
its verdicts from :mod:`~huberkl.report.judge` and writes its Markdown and tables.
"""

from __future__ import annotations

from huberkl.params import COORDS
from huberkl.report import collect, judge, paper
from huberkl.report.files import copy_figure, save_table
from huberkl.report.render import Document
from huberkl.tables import markdown_table


def figure1(doc: Document, data: collect.Figure1 | None) -> None:
    """The losses' figure and the largest violation of Eq. 20's bounds per α."""
    doc.add("## Figure 1: the Huber loss and its KL bounds")
    if data is None:
        doc.add("_Not computed._")
        return
    doc.add(f"![Figure 1]({copy_figure(doc.dest, data.image, 'figure1.png')})")
    if data.bounds is not None:
        rows = [[f"{a:g}", f"{lo:.2e}", f"{hi:.2e}"] for a, lo, hi in data.bounds.rows]
        doc.add(markdown_table(["α", "max(D_{α,1/α} − H_α)", "max(H_α − D_{α/2,1/α})"], rows))
        save_table(
            doc.dest,
            "figure1_bounds",
            ["alpha", "max_lower_minus_huber", "max_huber_minus_upper"],
            rows,
        )
        doc.claims.append(judge.bounds(data.bounds.lower, data.bounds.upper))
    doc.add(doc.provenance("figure1"))


def _stage(by_name: dict, name: str, stage: str) -> dict:
    stages = by_name[name]["stages"]
    return next(s for s in stages if s["stage"] == stage)


def _exact(by_name: dict, name: str, stage: str, key: str, coord: str | None = None) -> str:
    """A setting as the paper writes it (a fraction), else as computed."""
    st = _stage(by_name, name, stage)
    exact = st.get("exact", {})
    if key == "sigma":
        return str(exact.get("sigma", {}).get(coord, st["sigma"][coord]))
    return str(exact.get(key, st[key]))


def tables12(doc: Document, data: list[dict] | None) -> None:
    """Table 1 (the settings) and Table 2 (the noise scales they imply), cell by cell
    against the paper's."""
    doc.add("## Tables 1 and 2: the settings and the noise scales they imply")
    if not data:
        doc.add("_Not computed._")
        return
    by_name = {p["preset"]: p for p in data}
    cols = [(n, st) for n in paper.TABLE1 for st in ("proposal", "detection")]
    header = ["", *[f"{n} {st[:4]}." for n, st in cols]]
    rows1 = []
    for key, label in (("lambda", "λ"), ("alpha", "α")):
        rows1.append([label, *[_exact(by_name, n, st, key) for n, st in cols]])
    for c in COORDS:
        rows1.append([f"σ{c}", *[_exact(by_name, n, st, "sigma", c) for n, st in cols]])
    doc.add("**Table 1** (settings, from `conf/params/`):\n")
    doc.add(markdown_table(header, rows1))
    save_table(doc.dest, "table1", header, rows1)
    # Table 2: ours, with a check mark where the paper's cell agrees.
    rows2, agree, total = [], 0, 0
    for kind, key in (("label", "label_noise_text"), ("prediction", "prediction_noise_text")):
        for c in COORDS:
            row = [f"{c}{'*' if kind == 'label' else '̃'}"]
            for n, st in cols:
                ours = _stage(by_name, n, st)[key][c]
                theirs = paper.TABLE2[n][st][kind][c]
                total += 1
                agree += ours == theirs
                row.append(ours if ours == theirs else f"{ours} (paper: {theirs})")
            rows2.append(row)
    doc.add(
        f"**Table 2** (noise scales read by `huberkl interpret`; {agree}/{total} cells equal the paper's):\n"
    )
    doc.add(markdown_table(header, rows2))
    save_table(doc.dest, "table2", header, rows2)
    doc.claims.append(judge.table2(agree, total))
    doc.add(doc.provenance("tables12"))


def figure2(doc: Document, data: collect.Figure2 | None) -> None:
    """The toy's figure, its linear fits (one verdict per noise family) and its optima."""
    doc.add("## Figure 2: optimal α against the noise scale (toy polynomial)")
    if data is None:
        doc.add("_Not computed._")
        return
    doc.add(f"![Figure 2]({copy_figure(doc.dest, data.image, 'figure2.png')})")
    df = data.fit
    if df is not None:
        doc.add(
            "Linear fit of the optimal α against the noise scale, per noise family and solver:\n"
        )
        doc.add(markdown_table(list(df.columns), df.round(4).astype(str).values.tolist()))
        save_table(doc.dest, "figure2_fit", list(df.columns), df.values.tolist())
        doc.claims.extend(judge.toy(df))
    df = data.optimal
    if df is not None:
        save_table(doc.dest, "figure2_optimal", list(df.columns), df.values.tolist())
        doc.add(
            f"Per-scale optima with their spread over seeds and the theory's α: [tables/figure2_optimal.csv](tables/figure2_optimal.csv) ({len(df)} rows).\n"
        )
    doc.add(doc.provenance("figure2"))
