"""Tables 3-6 and the loss-balance control, judged with paired intervals.

Every setting runs once per seed and seed k of every setting shares initialisation and
data order, so each claim is judged on the per-seed differences between two settings
(:mod:`huberkl.stats`): a "greater" claim is supported or contradicted only when the 95%
interval of the mean difference excludes zero (a contradiction among n comparisons: the
Bonferroni interval), an equivalence claim ("alike", "not worse")
only by where that interval lies against its stated margin (the rules:
:mod:`huberkl.report.judge`).
The section's learning curves (:mod:`~huberkl.report.curve`) come before the tables and
its noise sweep (:mod:`~huberkl.report.sweep`) after them; :mod:`~huberkl.report.build`
calls the three in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import PurePosixPath
from typing import Any

from huberkl import stats
from huberkl.detect.evaluation import summarize
from huberkl.report import paper
from huberkl.report.collect import Runs
from huberkl.report.files import link, save_table
from huberkl.report.judge import (
    CEILING,
    EQUIVALENCE_MARGIN,
    Claim,
    Comparison,
    Judged,
    claim_verdict,
    judge_claim,
)
from huberkl.report.render import Document
from huberkl.tables import markdown_table

# Tables 3-6: detect summarize's mAP columns (its METRICS and cells), under the report's names.
METRICS = tuple(zip(summarize.METRICS, ("mAP@0.5", "mAP@0.75", "mAP@[.5:.95]"), strict=True))


def cell(runs: Runs, setting: str, key: str) -> str:
    """``mean ± half-width`` in % over the setting's seeds (``detect summarize``'s cell)."""
    vals = list(runs.values(setting, key).values())
    return summarize.cell(vals, spread="ci95") if vals else "not run"


def comparisons_table(judged: Sequence[Judged], labels: dict[str, str]) -> list[list[str]]:
    rows = []
    for j in judged:
        c = j.comparison
        if j.diff is None:
            rows.append(
                [
                    c.claim,
                    f"{labels.get(c.better, c.better)} − {labels.get(c.other, c.other)}",
                    c.metric,
                    "–",
                    "–",
                    "–",
                    j.verdict,
                ]
            )
            continue
        rows.append(
            [
                c.claim,
                f"{labels.get(c.better, c.better)} − {labels.get(c.other, c.other)}",
                c.metric,
                f"{j.diff.n} of {j.planned}" if j.short else str(j.diff.n),
                f"{100 * j.diff.mean:+.1f}",
                _interval(j),
                j.verdict,
            ]
        )
    return rows


def judge_claims(
    doc: Document,
    name: str,
    runs: Runs,
    claims: Sequence[tuple[str, list[Comparison]]],
    labels: dict[str, str],
    describe: Callable[[Comparison], str],
    note: str = "",
) -> None:
    """Judge each claim on its comparisons: one verdict per claim in ``doc.claims`` (its
    evidence names each comparison by ``describe``, then ``note``), and the comparisons
    table with the protocol's power in the report (``tables/<name>_comparisons``)."""
    every: list[Judged] = []
    for claim, comparisons in claims:
        judged = judge_claim(runs, comparisons)
        every += judged
        evidence = "; ".join(f"{describe(j.comparison)} {_delta(j)}" for j in judged) + note
        doc.claims.append(Claim(claim, claim_verdict(judged), evidence))
    rows = comparisons_table(every, labels)
    doc.add(markdown_table(COMPARISON_HEADER, rows))
    save_table(doc.dest, f"{name}_comparisons", COMPARISON_HEADER, rows)
    line, _ = power_line(every)
    if line:
        doc.add(line)


def _interval(j: Judged) -> str:
    """The 95% interval in points; one seed has none."""
    assert j.diff is not None
    if j.diff.n < 2:
        return "(one seed)"
    return f"[{100 * j.diff.low:+.1f}, {100 * j.diff.high:+.1f}]"


def _delta(j: Judged) -> str:
    if j.diff is None:
        return j.verdict  # not run, or why it cannot be tested
    return f"{100 * j.diff.mean:+.1f} {_interval(j)}"


COMPARISON_HEADER = [
    "claim",
    "paired difference",
    "metric",
    "seeds",
    "Δ (points)",
    "95% interval",
    "verdict",
]


def power_line(judged: Sequence[Judged]) -> tuple[str, float]:
    """The protocol's minimal detectable difference from the pooled SD of the paired
    differences (each comparison about its own mean), and that difference in metric units."""
    once = {(j.comparison.better, j.comparison.other, j.comparison.metric): j for j in judged}
    groups = [j.diffs for j in once.values() if len(j.diffs) >= 2]  # a shared one counts once
    if not groups:
        return "", math.inf
    sd, df = stats.pooled_sd(groups)
    n = min(len(g) for g in groups)
    mdd = stats.detectable(sd, n)
    return (
        f"**Power.** Over these comparisons a per-seed paired difference has a pooled SD of "
        f"{100 * sd:.2f} points ({df} degrees of freedom); with {n} seeds a two-sided 95% "
        f"test detects a true difference of **{100 * mdd:.1f} points** with {stats.POWER:.0%} "
        "power. Smaller effects may exist; they are below what this protocol can see.\n",
        mdd,
    )


# ------------------------------------------------------------------------ the run's prose


def _start(model: dict) -> str:
    """Where a run's weights start: scratch, a whole-model file, or a pretext backbone."""
    from huberkl.plan import whole_detector

    weights = model.get("weights")
    folder = PurePosixPath(str(weights or "").replace("\\", "/")).parent.name
    if weights and folder.startswith("pretrain-") and whole_detector(folder):
        return (
            "the whole detector pretrained on the pretext set from the shared backbone "
            "(`scale.pretrain.detectors`), heads included"
        )
    if weights:
        return f"trained from weights {weights}"
    if model.get("backbone_init"):
        return (
            "backbone (body and FPN) pretrained on the pretext set (`scale.pretrain`), the "
            "heads from scratch"
        )
    return "trained from scratch"


def protocol_text(runs: Runs, settings: Sequence[str], seeds: str) -> str:
    """What was trained, read from the run records (never from fixed text)."""
    lines = []
    for setting in settings:
        rec, cfg = runs.record(setting)
        if not rec:
            continue
        d = cfg.get("detect", {})
        m = rec.get("model") or {}
        opt = d.get("optim", {})
        size = m.get("parameters")
        params = f"{size / 1e6:.2f} M parameters" if size else "size not recorded"
        lines.append(
            f"- **{m.get('arch', d.get('model', {}).get('arch', '?'))}**: backbone "
            f"`{m.get('backbone', d.get('model', {}).get('backbone', '?'))}` ({params}, "
            f"{_start(d.get('model', {}))}), "
            f"{d.get('iters', '?')} {opt.get('name', '?')} steps (lr {opt.get('lr', '?')}, "
            f"{d.get('schedule', {}).get('name', '?')} schedule) of {d.get('batch_size', '?')} "
            f"images at {d.get('model', {}).get('min_size', '?')} px on {rec.get('device', '?')}."
        )
    rec, _ = runs.record(settings[0]) if settings else ({}, {})
    data = rec.get("data") or {}
    info = data.get("info") or {}
    if data.get("name") == "synth" or info.get("description", "").startswith("huberkl synthetic"):
        noise = info.get("noise_description") or f"{info.get('noise', 'no')} noise"
        lines.append(
            f"- **Data**: the synthetic shapes set (`huberkl data synth`), {info.get('images', '?')} "
            f"training images of {info.get('size', '?')} px with label noise — {noise} — and "
            f"{info.get('val_images', '?')} validation images with exact boxes."
        )
    elif data:
        lines.append(f"- **Data**: `{data.get('root', '?')}` (COCO format), annotations as given.")
    lines.append(
        f"- **Seeds**: {seeds}; seed k of every setting shares its initialisation and data "
        "order (paired)."
    )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------- the claims of each table

Claims = list[tuple[str, list[Comparison]]]


def table3_claims() -> Claims:
    impl, pub = "frcnn-implementation", "frcnn-publication"
    exps = ("frcnn-exp-a", "frcnn-exp-b", "frcnn-exp-c")
    worst = "The Publication settings (label noise w_a) perform worst (Table 3, mAP@[.5:.95])"
    ap75 = "Smaller noise scales (Exp. A-C) raise mAP@0.75 over the Implementation (Table 3)"
    ap = "Exp. A-C raise mAP@[.5:.95] over the Implementation (Table 3)"
    trade = (
        "Experiments A and B trade off performance at 0.5 and 0.75 IoU: A is higher at 0.5, "
        "B at 0.75 (Table 3)"
    )
    a, b, c = exps
    balance = (
        "Experiment C balances the two: above B at 0.5 IoU and above A at 0.75, and not worse "
        f"than A at 0.5 nor than B at 0.75 (Table 3; at most {_margin()})"
    )
    trend = (
        "Experiment B loses mAP@0.5 against the Implementation (Table 3; Sec. 7.2's "
        '"similar trend" to RetinaNet)'
    )
    loc = (
        "Control: at the Implementation's saturated box gradient λ/σ (detection stage on every "
        "coordinate, proposal stage on x, y; its w, h at ½), Exp. A's α and σ still raise "
        "mAP@0.75 (localisation, not loss balance)"
    )
    heavy = (
        "Control: Exp. A's heavier proposal box gradient (λ/σ 5x the Implementation's on x, y, "
        "2.5x on w, h) costs accuracy (balanced − Exp. A > 0)"
    )
    return [
        (worst, [Comparison(worst, x, pub, "AP") for x in (impl, *exps)]),
        (ap75, [Comparison(ap75, x, impl, "AP75") for x in exps]),
        (ap, [Comparison(ap, x, impl, "AP") for x in exps]),
        (trade, [Comparison(trade, a, b, "AP50"), Comparison(trade, b, a, "AP75")]),
        (
            balance,
            [
                Comparison(balance, c, b, "AP50"),
                Comparison(balance, c, a, "AP75"),
                Comparison(balance, c, a, "AP50", "not-worse"),
                Comparison(balance, c, b, "AP75", "not-worse"),
            ],
        ),
        (trend, [Comparison(trend, impl, b, "AP50")]),
        (loc, [Comparison(loc, "frcnn-exp-a-balanced", impl, "AP75")]),
        (
            heavy,
            [Comparison(heavy, "frcnn-exp-a-balanced", "frcnn-exp-a", k) for k in ("AP", "AP75")],
        ),
    ]


def table4_claims() -> Claims:
    impl, a, b = "retinanet-implementation", "retinanet-exp-a", "retinanet-exp-b"
    better = "RetinaNet: Experiment A beats the Implementation at every threshold (Table 4)"
    worse50 = "RetinaNet: Experiment B loses mAP@0.5 against the Implementation (Table 4)"
    loc = (
        "RetinaNet control: at the Implementation's λ/σ on x, y (w, h at ½), Exp. A's α and σ "
        "raise mAP@0.75"
    )
    heavy = (
        "RetinaNet control: Exp. A's heavier box gradient costs accuracy (balanced − Exp. A > 0)"
    )
    bal = "retinanet-exp-a-balanced"
    return [
        (better, [Comparison(better, a, impl, k) for k in ("AP50", "AP75", "AP")]),
        (worse50, [Comparison(worse50, impl, b, "AP50")]),
        (loc, [Comparison(loc, bal, impl, "AP75")]),
        (heavy, [Comparison(heavy, bal, a, k) for k in ("AP", "AP75")]),
    ]


def _margin() -> str:
    return f"{100 * EQUIVALENCE_MARGIN:g} point"


def table5_claims() -> Claims:
    c = (
        "Linear targets w/w_a − 1 cost only a very slight degradation against log targets "
        f"(Table 5; at most {_margin()})"
    )
    return [
        (
            c,
            [
                Comparison(c, "frcnn-linear", "frcnn-implementation", k, "not-worse")
                for k in ("AP50", "AP75", "AP")
            ],
        )
    ]


def table6_claims() -> Claims:
    c = f"D_{{α/2,1/α}} and H_α perform nearly identically (Table 6; within ±{_margin()})"
    return [
        (
            c,
            [
                Comparison(c, "frcnn-kl", "frcnn-implementation", k, "alike")
                for k in ("AP50", "AP75", "AP")
            ],
        )
    ]


# ------------------------------------------------------------------------ the section


def intro(doc: Document, runs: Runs, plan: Any) -> None:
    """The section's heading and how its cells are read; what was trained (from the run
    records) goes to ``doc.protocol`` for the report's "how this differs" list."""
    s = plan.scale
    counts = sorted({r.get("seeds") or len(s.detect.seeds) for r in s.detect.runs}, reverse=True)
    seeds = f"{', '.join(map(str, s.detect.seeds))} for the settings of Tables 3-6" + (
        f" (the first {', '.join(map(str, counts[1:]))} for some: see each table's seeds column)"
        if len(counts) > 1
        else ""
    )
    if s.sweep.scales and not plan.get("coco"):
        seeds += f"; {', '.join(map(str, s.sweep.seeds))} in the noise sweep"
    doc.protocol = protocol_text(runs, ["frcnn-implementation", "retinanet-implementation"], seeds)
    doc.add("## Detection: Tables 3-6, a loss-balance control and a noise sweep\n")
    doc.add(
        "Every cell below is the mean over seeds ± the half-width of its 95% t interval "
        "(mAP in %). Claims are judged on paired differences (seed k against seed k). A "
        "claim made of several comparisons is supported only when each one is, and "
        "contradicted when one is at the Bonferroni level over its n comparisons (chance "
        "alone contradicts one of n up to n times as often as one); equivalence claims are "
        f"judged against a {_margin()} margin (alike: ±; not worse: −), never against zero.\n"
    )


def caveat(doc: Document, converged: dict[str, bool | None]) -> None:
    """Say, here and above the claims table, which detectors' protocol still moves, and
    which one's convergence check has not run yet (its verdicts are provisional)."""
    moving = [arch for arch, ok in converged.items() if ok is False]
    pending = [arch for arch, ok in converged.items() if ok is None]
    text = ""
    if moving:
        text += (
            f"**Caveat: the protocol is not converged for {', '.join(moving)}** (see "
            "the learning curves): the verdicts on it describe a schedule whose results "
            "still move with more training, not where the settings lead.\n\n"
        )
    if pending:
        text += (
            f"**Caveat: convergence is not yet checked for {', '.join(pending)}** (its "
            "learning-curve runs are not all done): its verdicts hold for this schedule and "
            "are provisional until the check passes.\n\n"
        )
    if text:
        doc.caveat = text
        doc.add(text)


def tables(doc: Document, runs: Runs) -> None:
    """Tables 3-6, each with its paired comparisons and verdicts."""
    labels = {
        **{f"frcnn-{n}": label for n, label in paper.LABELS.items()},
        **{f"retinanet-{n}": label for n, label in paper.LABELS_RETINANET.items()},
    }
    t3 = [
        ("Baseline [18]", None, "baseline [18]"),
        *[
            (paper.LABELS[n], f"frcnn-{n}", n)
            for n in ("publication", "implementation", "exp-a", "exp-b", "exp-c")
        ],
        (paper.LABELS["exp-a-balanced"], "frcnn-exp-a-balanced", None),
    ]
    baseline = (
        "The Baseline row is the number the paper quotes from [18] (another code base); "
        "it names no loss setting, so there is nothing of it to train here."
    )
    baseline += _ceiling_note(runs, "frcnn-implementation")
    table(doc, "Table 3: Faster R-CNN", "table3", runs, t3, paper.TABLE3_FRCNN, note=baseline)
    judged_section(doc, "table3", runs, table3_claims(), labels)
    t4 = [
        *[(paper.LABELS[n], f"retinanet-{n}", n) for n in ("implementation", "exp-a", "exp-b")],
        (paper.LABELS_RETINANET["exp-a-balanced"], "retinanet-exp-a-balanced", None),
    ]
    note4 = _ceiling_note(runs, "retinanet-implementation").strip()
    title4 = "Table 4: RetinaNet (its own seeds)"
    table(doc, title4, "table4", runs, t4, paper.TABLE4_RETINANET, note=note4)
    judged_section(doc, "table4", runs, table4_claims(), labels)
    t5 = [
        ("log (original)", "frcnn-implementation", "log (original)"),
        ("linear (approximation)", "frcnn-linear", "linear (approximation)"),
    ]
    title5 = "Table 5: log versus linear width/height targets (Appendix D)"
    ceiling = _ceiling_note(runs, "frcnn-implementation").strip()
    table(doc, title5, "table5", runs, t5, paper.TABLE5_TARGETS, note=ceiling)
    judged_section(doc, "table5", runs, table5_claims(), labels)
    t6 = [("H_α", "frcnn-implementation", "H_α"), ("D_{α/2,1/α}", "frcnn-kl", "D_{α/2,1/α}")]
    title6 = "Table 6: H_α versus D_{α/2,1/α} (Appendix E)"
    table(doc, title6, "table6", runs, t6, paper.TABLE6_LOSS, note=ceiling)
    judged_section(doc, "table6", runs, table6_claims(), labels)


def _ceiling_note(runs: Runs, setting: str) -> str:
    """Say so when mAP@0.5 is near its ceiling: claims decided there can show little."""
    vals = list(runs.values(setting, "AP50").values())
    mean = sum(vals) / len(vals) if vals else 0.0
    if mean < CEILING:
        return ""
    return (
        f" mAP@0.5 is near its ceiling here ({100 * mean:.1f}% for the "
        "Implementation, the paper's about 45-60%): differences at 0.5 IoU are squeezed, so a "
        "claim that one setting is higher there has little room to show, and one that two "
        "settings are alike there is weak evidence."
    )


def _paper(v: float | None) -> str:
    return "–" if v is None else f"{v:.1f}"


def table(
    doc: Document,
    title: str,
    table_name: str,
    runs: Runs,
    rows_spec: Sequence[tuple[str, str | None, str | None]],
    paper_values: dict,
    note: str = "",
) -> None:
    """One of Tables 3-6, ours beside the paper's. rows_spec: (label, setting or None for
    a paper-only row, paper key)."""
    doc.add(f"## {title}")
    header = [
        "setting",
        *[m for _, m in METRICS],
        "seeds",
        *[f"paper {m}" for _, m in METRICS],
        "runs",
    ]
    rows = []
    for label, setting, pkey in rows_spec:
        theirs = (
            [_paper(v) for v in paper_values.get(pkey, (None, None, None))] if pkey else ["–"] * 3
        )
        if setting is None:
            rows.append([label, *["not trained"] * 3, "–", *theirs, "–"])
            continue
        ours = [cell(runs, setting, k) for k, _ in METRICS]
        steps = runs.step_of.get(setting, {})
        done = runs.seeds(setting)  # a run still training has a config, no metrics
        links = " ".join(
            f"[{seed}]({link(doc.root / name, doc.dest)}/config.yaml)"
            for seed, name in sorted(steps.items())
            if seed in done and (doc.root / name / "config.yaml").is_file()
        )
        rows.append([label, *ours, str(len(runs.seeds(setting))), *theirs, links or "–"])
    doc.add(markdown_table(header, rows))
    if note:
        doc.add(note + "\n")
    save_table(doc.dest, table_name, header, rows)


def judged_section(
    doc: Document, name: str, runs: Runs, claims: Sequence[tuple[str, list]], labels: dict
) -> None:
    """The paired comparisons behind each claim of a table, and one verdict per claim."""

    def describe(c: Comparison) -> str:
        better, other = labels.get(c.better, c.better), labels.get(c.other, c.other)
        return f"{better} − {other} {c.metric}"

    judge_claims(doc, name, runs, claims, labels, describe)
