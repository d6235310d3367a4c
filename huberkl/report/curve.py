"""The learning curve: is the detection protocol converged, and how do early verdicts move?

Some settings (the Implementation and Exp. A of each detector) are also trained at other
multiples of the protocol's schedule, each its own run with its own schedule, paired by
seed with the tables' runs. The protocol counts as converged when doubling its schedule

- moves the Implementation's AP and AP75 by less than :data:`~huberkl.report.judge.MOVE`
  (mean paired change), and
- moves each difference "setting − Implementation" by less than that difference's own
  95% half-width at the protocol's schedule (the verdicts would not change with training).

Early in training the loss weights set how fast each head learns, so a difference measured
there says how fast, not where the settings lead; the table of differences against the
schedule length keeps that finding beside the verdicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huberkl import stats
from huberkl.report.collect import Runs
from huberkl.report.files import save_figure, save_table
from huberkl.report.judge import MOVE, converged, stable
from huberkl.report.render import Document
from huberkl.tables import markdown_table

KEYS = ("AP", "AP75")


def setting_at(run: str, multiple: float) -> str:
    """The setting name of ``run`` trained at ``multiple`` of its schedule (1: the table's)."""
    return run if multiple == 1 else f"{run}-x{multiple:g}"


@dataclass(frozen=True)
class Curve:
    """One detector's curve: its reference run (the Implementation), the others, and the
    schedule lengths (multiple, steps) in increasing order."""

    arch: str
    reference: str
    others: tuple[str, ...]
    points: tuple[tuple[float, int], ...]
    seeds: int = 2  # the check waits for this many paired seeds (the curve's own)


def curves(plan: Any) -> list[Curve]:
    """The plan's curves, one per detector that has a ``*-implementation`` curve run."""
    from huberkl.plan import curve_iters, schedule_length

    s = plan.scale
    if not s.curve.runs:
        return []
    by_name = {r.name: r for r in s.detect.runs}
    arch_of = {n: r.arch for n, r in by_name.items()}
    out = []
    for arch in dict.fromkeys(arch_of[n] for n in s.curve.runs):
        names = [n for n in s.curve.runs if arch_of[n] == arch]
        ref = next((n for n in names if n.endswith("-implementation")), None)
        if ref is None:
            continue
        iters = schedule_length(plan, arch)
        mults = sorted({1.0, *map(float, s.curve.multiples)})
        points = tuple((m, curve_iters(m, iters)) for m in mults)
        others = tuple(n for n in names if n != ref)
        seeds = len(s.curve.seeds) or by_name[ref].seeds or len(s.detect.seeds)
        out.append(Curve(arch, ref, others, points, seeds=seeds))
    return out


def _fmt(iv: stats.Interval | None) -> str:
    if iv is None:
        return "not run"
    if iv.n < 2:
        return f"{100 * iv.mean:+.1f} (1 seed)"
    return f"{100 * iv.mean:+.1f} [{100 * iv.low:+.1f}, {100 * iv.high:+.1f}]"


def _paired(runs: Runs, a: str, b: str, key: str) -> tuple[stats.Interval | None, dict]:
    """Interval of ``a − b`` over shared seeds, and the per-seed differences."""
    va, vb = runs.values(a, key), runs.values(b, key)
    seeds = sorted(set(va) & set(vb))
    if not seeds:
        return None, {}
    diffs = dict(zip(seeds, stats.differences(va, vb), strict=True))
    return stats.t_interval(list(diffs.values())), diffs


def _result(holds: bool, iv: stats.Interval | None) -> str:
    if iv is None:
        return "not run"
    if iv.n < 2:
        return "one seed: no interval"
    return "holds" if holds else "fails"


def check(runs: Runs, c: Curve) -> tuple[list[list[str]], bool | None]:
    """The convergence check at the protocol's schedule (1x against 2x): table rows and
    whether every criterion holds (None when the 2x runs are missing)."""
    if not any(m == 2 for m, _ in c.points):
        return [], None
    rows, ok, complete = [], True, True
    for key in KEYS:
        iv, _ = _paired(runs, setting_at(c.reference, 2), c.reference, key)
        holds = converged(iv)
        complete &= iv is not None and iv.n >= max(2, c.seeds)
        ok &= holds
        rows.append(
            [
                f"{c.reference} {key}: 2x − 1x",
                _fmt(iv),
                f"|mean| < {100 * MOVE:g}",
                _result(holds, iv),
            ]
        )
    for other in c.others:
        for key in KEYS:
            at1, d1 = _paired(runs, other, c.reference, key)
            _, d2 = _paired(runs, setting_at(other, 2), setting_at(c.reference, 2), key)
            seeds = sorted(set(d1) & set(d2))
            move = stats.t_interval([d2[k] - d1[k] for k in seeds]) if seeds else None
            complete &= move is not None and move.n >= max(2, c.seeds) and at1 is not None
            holds = stable(move, at1)
            ok &= holds
            bound = f"{100 * at1.half:.1f}" if at1 is not None and math.isfinite(at1.half) else "?"
            rows.append(
                [
                    f"({other} − {c.reference}) {key}: 2x − 1x",
                    _fmt(move),
                    f"|mean| <= {bound} (its 1x half-width)",
                    _result(holds, move),
                ]
            )
    return rows, (ok if complete else None)


def section(doc: Document, runs: Runs, plan: Any) -> dict[str, bool | None]:
    """The learning-curve figure, the convergence check and the early-training table;
    returns ``{arch: converged}`` (None: not all runs done) for the verdicts' caveat, for
    each detector with a table run done."""
    cs = curves(plan)
    if not cs:
        return {}
    doc.add("## Is the protocol converged? Learning curves\n")
    doc.add(
        "Each point is its own run trained for that many steps (its own schedule), paired "
        "by seed with the tables' runs; mean ± 95% half-width over the curve's seeds "
        "(those of its table runs). The protocol is converged when "
        f"doubling its schedule moves the Implementation's AP and AP75 by less than "
        f"{100 * MOVE:g} point and moves each difference against it by less than that "
        "difference's own half-width (on the mean paired change, once every curve seed has "
        "run; the interval says how well the change is known).\n"
    )
    status: dict[str, bool | None] = {}
    header = ["quantity", "paired change (points) [95% interval]", "criterion", "result"]
    for c in cs:
        rows, ok = check(runs, c)
        if runs.seeds(c.reference):  # a detector none of whose runs is done has no verdicts
            status[c.arch] = ok
        if rows:
            wait = f"not yet checked: it waits for all {c.seeds} curve seeds at 1x and 2x"
            word = {True: "converged", False: "NOT converged", None: wait}[ok]
            steps = dict(c.points)[1.0]
            doc.add(f"**{c.arch}, {steps} steps, {c.seeds} seeds: {word}.**\n")
            doc.add(markdown_table(header, rows))
            save_table(doc.dest, f"convergence_{c.arch}", header, rows)
    _early_table(doc, runs, cs)
    if figure(doc.dest / "figures" / "learning_curve.png", runs, cs):
        doc.add("![Learning curves](figures/learning_curve.png)\n")
    return status


def _early_table(doc: Document, runs: Runs, cs: Sequence[Curve]) -> None:
    """Each difference against the Implementation at every schedule length."""
    doc.add(
        "**Differences against the Implementation by schedule length** (points, paired "
        "[95% interval]). Early in training the loss weights set how fast each head "
        "learns; the paper's question is where the settings lead, at the end.\n"
    )
    for c in cs:
        header = ["difference", *[f"{n} steps ({m:g}x)" for m, n in c.points]]
        rows = []
        for other in c.others:
            for key in KEYS:
                cells = [
                    _fmt(_paired(runs, setting_at(other, m), setting_at(c.reference, m), key)[0])
                    for m, _ in c.points
                ]
                rows.append([f"{other} − {c.reference} {key}", *cells])
        doc.add(markdown_table(header, rows))
        save_table(doc.dest, f"schedule_{c.arch}", header, rows)


def figure(path: Path, runs: Runs, cs: Sequence[Curve]) -> bool:
    """AP75 against steps per detector, one line per setting, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not any(runs.seeds(setting_at(c.reference, m)) for c in cs for m, _ in c.points):
        return False
    fig, axes = plt.subplots(1, len(cs), figsize=(6 * len(cs), 4.2), squeeze=False)
    for ax, c in zip(axes[0], cs, strict=True):
        for run in (c.reference, *c.others):
            pts = []
            for m, n in c.points:
                vals = list(runs.values(setting_at(run, m), "AP75").values())
                if vals:
                    iv = stats.t_interval(vals)
                    pts.append((n, 100 * iv.mean, 100 * iv.half if math.isfinite(iv.half) else 0))
            if pts:
                x, y, e = zip(*pts, strict=True)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=run)
        ax.axvline(dict(c.points)[1.0], color="k", ls=":", lw=1, label="protocol")
        ax.set_xscale("log")
        steps = [n for _, n in c.points]  # every schedule length, labelled as it is
        ax.set_xticks(steps, [str(n) for n in steps])
        ax.minorticks_off()
        ax.set_xlim(steps[0] / 1.3, steps[-1] * 1.3)
        if not ax.lines[:-1]:
            ax.text(0.5, 0.5, "not run yet", transform=ax.transAxes, ha="center", va="center")
        ax.set_xlabel("training steps (each point its own schedule)")
        ax.set_ylabel("mAP@0.75 (%)")
        ax.set_title(c.arch)
        ax.legend(fontsize=8)
    save_figure(fig, path)
    return True
