"""The report's three stages, each on small made-up inputs: collect (records -> plain data),
judge (the verdict rules and their thresholds) and render (Markdown, HTML)."""

from __future__ import annotations

import datetime as dt
import json
import types
from pathlib import Path

import pandas as pd
import pytest

from huberkl import stats
from huberkl.report import collect, judge, render
from huberkl.report.judge import Comparison


def _step(name: str, seed: int | None = None, setting: str = "") -> types.SimpleNamespace:
    return types.SimpleNamespace(
        name=name,
        title=f"the {name} step",
        seed=seed,
        setting=setting,
        serves=[],
        argv=lambda out: ["huberkl", name, "--out", str(out)],
    )


# ------------------------------------------------------------------------------- collect


def test_collect_reads_a_missing_section_as_none(tmp_path):
    assert collect.figure1(tmp_path / "figure1") is None
    assert collect.figure2(tmp_path / "figure2") is None
    assert collect.tables12(tmp_path / "tables12") is None
    (tmp_path / "tables12").mkdir()
    (tmp_path / "tables12" / "stdout.txt").write_text("not json", encoding="utf-8")
    assert collect.tables12(tmp_path / "tables12") is None
    assert collect.measured_noise(tmp_path, 0.1) == {}


def test_collect_figure1_takes_the_largest_violation_per_alpha_and_overall(tmp_path):
    d = tmp_path / "figure1"
    d.mkdir()
    (d / "figure1.png").write_bytes(b"png")
    (d / "figure1.csv").write_text(
        "alpha,huber,lower,upper\n1,1.0,0.9,1.2\n1,2.0,1.5,2.5\n2,1.0,0.5,0.99\n",
        encoding="utf-8",
    )
    data = collect.figure1(d)
    assert data.image == d / "figure1.png"
    flat = [v for row in data.bounds.rows for v in row]
    assert flat == pytest.approx([1, -0.1, -0.2, 2, -0.5, 0.01])
    assert data.bounds.lower == pytest.approx(-0.1) and data.bounds.upper == pytest.approx(0.01)


def test_collect_step_records(tmp_path):
    steps = [_step("done"), _step("planned")]
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / ".done.json").write_text(
        json.dumps({"argv": ["huberkl", "x"], "seconds": 3.5}), encoding="utf-8"
    )
    (tmp_path / "done" / "config.yaml").write_text("a: 1\n", encoding="utf-8")
    times = collect.step_times(tmp_path, steps)
    assert [(t.name, t.seconds) for t in times] == [("done", 3.5), ("planned", None)]
    by_name = {s.name: s for s in steps}
    done = collect.provenance(tmp_path, "done", by_name)
    assert (done.argv, done.seconds, done.has_config) == (["huberkl", "x"], 3.5, True)
    planned = collect.provenance(tmp_path, "planned", by_name)  # not run: the planned command
    assert planned.argv[:2] == ["huberkl", "planned"] and planned.seconds is None
    assert "huberkl" in collect.machine()


def test_collect_runs_by_setting_and_seed(tmp_path):
    steps = [_step(f"a-s{k}", k, "a") for k in (0, 1)] + [_step("figure1")]
    for k, ap in ((0, 0.5), (1, None)):
        (tmp_path / f"a-s{k}").mkdir()
        (tmp_path / f"a-s{k}" / "metrics.json").write_text(json.dumps({"AP": ap}), encoding="utf-8")
    runs = collect.Runs(tmp_path, steps)
    assert runs.step_of == {"a": {0: "a-s0", 1: "a-s1"}}
    assert runs.values("a", "AP") == {0: 0.5}  # a null metric is no value
    assert runs.seeds("a") == [0, 1] and runs.seeds("b") == []


def test_collect_parts_counts_the_runs_with_records_of_each_part(tmp_path):
    from huberkl import plan as plans

    plan = plans.load_plan("cpu")
    steps = plans.build_steps(plan, tmp_path)
    curves_b = [s for s in steps if s.seed is not None and plans.in_part(s, plan, "curves-b")]
    for s, seconds in zip(curves_b[:3], (60.0, 120.0, None), strict=True):
        (tmp_path / s.name).mkdir()
        (tmp_path / s.name / ".done.json").write_text(
            json.dumps({"key": "k", "seconds": seconds}), encoding="utf-8"
        )
    got = {p.name: p for p in collect.parts(tmp_path, steps, plan)}
    assert list(got) == list(plan.scale.parts)
    assert (got["curves-b"].total, got["curves-b"].done) == (8, 3)
    assert got["curves-b"].seconds == 180.0
    assert (got["tables-a"].total, got["tables-a"].done, got["tables-a"].seconds) == (9, 0, 0.0)
    assert collect.parts(tmp_path, steps, "smoke") == []  # a scale without parts


# --------------------------------------------------------------------------------- judge


def test_judge_eq20_bounds_allow_rounding_only():
    assert judge.bounds(-0.1, 0.0).verdict == "supported"
    assert judge.bounds(-0.1, judge.BOUND_TOLERANCE).verdict == "supported"
    claim = judge.bounds(-0.1, 1e-6)
    assert claim.verdict == "contradicted" and "1.0e-06" in claim.evidence
    assert judge.table2(80, 80).verdict == "supported"
    assert judge.table2(79, 80) == (
        "Table 2 follows from Table 1 by Eq. 21, 26, 32",
        "contradicted",
        "79 of 80 cells reproduced exactly (fractions)",
    )


def _fit(rows: list[tuple]) -> pd.DataFrame:
    cols = ["solver", "noise", "slope", "intercept", "r2", "theory_slope", "scales", "at_edge"]
    return pd.DataFrame(rows, columns=cols)


def test_judge_figure2_by_the_exact_solvers_line():
    fit = _fit(
        [
            ("exact", "cauchy", 0.4, 0.0, judge.LINEAR_R2, 0.4, 8, 0),
            ("exact", "logistic", 0.4, 0.0, judge.WEAK_R2, 0.4, 8, 0),
            ("exact", "gauss", 0.4, 0.0, judge.WEAK_R2 - 0.01, 0.4, 8, 0),
            ("exact", "down", -0.4, 0.0, 0.99, 0.4, 8, 0),
            ("exact", "laplace", judge.FLAT_SLOPE / 2, 0.0, 0.99, 0.0, 8, 3),
            ("gd", "only-gd", 0.4, 0.0, 0.99, 0.4, 8, 0),
        ]
    )
    verdicts = {c.claim.split(" the ")[1].split(" noise")[0]: c for c in judge.toy(fit)}
    assert {k: c.verdict for k, c in verdicts.items()} == {
        "cauchy": "supported",
        "logistic": "weak",
        "gauss": "contradicted",
        "down": "contradicted",  # a line that falls does not grow, whatever its R²
        "laplace": "contradicted",  # high R², but flat where the theory says α* = 0
    }
    assert "3 of 8 optima at the grid floor" in verdicts["laplace"].evidence
    assert judge.toy(fit.drop(columns="r2")) == []  # nothing to judge on


class _Runs(collect.Runs):
    def __init__(self, values: dict[str, dict[int, float]], planned: int = 0) -> None:
        self.metrics = {s: {k: {"AP": v} for k, v in d.items()} for s, d in values.items()}
        self.step_of = {s: {k: f"{s}-s{k}" for k in range(planned)} for s in values}


def test_judge_a_paired_comparison():
    runs = _Runs(
        {
            "base": {0: 0.50, 1: 0.60, 2: 0.55},
            "up": {0: 0.53, 1: 0.63, 2: 0.58},  # +3 points at every seed
            "same": {0: 0.501, 1: 0.599, 2: 0.552},
            "other-seeds": {7: 0.9},
        }
    )
    up = judge.judge(runs, Comparison("c", "up", "base", "AP"))
    assert up.verdict == "supported" and up.diff.n == 3 and len(up.diffs) == 3
    down = judge.judge(runs, Comparison("c", "base", "up", "AP"))
    assert down.verdict.startswith("contradicted")
    alike = judge.judge(runs, Comparison("c", "same", "base", "AP", "alike"))
    assert alike.verdict == "supported"  # within ± EQUIVALENCE_MARGIN
    missing = judge.judge(runs, Comparison("c", "other-seeds", "base", "AP"))
    assert (missing.verdict, missing.diff) == ("not run", None)
    assert judge.overall([missing.verdict, missing.verdict]) == "not run"
    assert judge.overall([up.verdict, missing.verdict]) == "incomplete (1 of 2 compared): supported"
    assert judge.overall([down.verdict, missing.verdict]) == "contradicted"
    one = stats.verdict(stats.t_interval([0.01]), "greater")
    assert one.startswith("cannot test")
    assert judge.overall([one, one]) == one
    assert judge.overall([one, missing.verdict]) == f"incomplete (0 of 2 compared): {one}"
    assert judge.overall([up.verdict, one]) == "incomplete (1 of 2 compared): supported"
    assert judge.overall([up.verdict, down.verdict]) == "contradicted"


def test_a_claim_on_fewer_seeds_than_planned_is_incomplete_whatever_its_interval_says():
    values = {
        "base": {0: 0.50, 1: 0.60},
        "up": {0: 0.53, 1: 0.63},  # +3 points at both seeds run so far
        "far": {0: 0.40, 1: 0.51, 2: 0.42},
        "gone": {},
    }
    runs = _Runs(values, planned=3)
    up = judge.judge(runs, Comparison("c", "up", "base", "AP"))
    assert (up.verdict, up.planned, up.short) == ("supported", 3, True)
    assert judge.claim_verdict([up]) == "incomplete (2 of 3 seeds): supported"
    down = judge.judge(runs, Comparison("c", "base", "up", "AP"))
    assert judge.claim_verdict([down]) == "incomplete (2 of 3 seeds): contradicted"
    missing = judge.judge(runs, Comparison("c", "up", "gone", "AP"))
    assert judge.claim_verdict([up, missing]) == (
        "incomplete (1 of 2 compared, 2 of 3 seeds): supported"
    )
    assert judge.claim_verdict([missing]) == "not run"
    one = judge.judge(
        _Runs({"a": {0: 0.5}, "b": {0: 0.4}}, planned=3), Comparison("c", "a", "b", "AP")
    )
    assert judge.claim_verdict([one]).startswith("incomplete (1 of 3 seeds): cannot test")
    full = _Runs(values, planned=2)  # the same two seeds, when two are all the plan trains
    assert (
        judge.claim_verdict([judge.judge(full, Comparison("c", "up", "base", "AP"))]) == "supported"
    )
    unplanned = _Runs(values)  # made-up records without a plan: judged as they stand
    assert judge.judge(unplanned, Comparison("c", "up", "base", "AP")).short is False


def test_judge_a_claim_confirms_a_contradiction_at_the_bonferroni_level():
    # base - b: -0.93 points, 95% interval [-1.69, -0.17]; at 97.5% (2 comparisons) it
    # reaches +0.16: one of two comparisons against a claim, but not beyond chance.
    runs = _Runs(
        {
            "base": {0: 0.500, 1: 0.500, 2: 0.500},
            "b": {0: 0.510, 1: 0.512, 2: 0.506},
            "low": {0: 0.40, 1: 0.41, 2: 0.40},
        }
    )
    alone = judge.judge(runs, Comparison("c", "base", "b", "AP"))
    assert alone.verdict == "contradicted"
    pair = [Comparison("c", "base", "b", "AP"), Comparison("c", "base", "low", "AP")]
    first, second = judge.judge_claim(runs, pair)
    assert first.verdict == (
        "no detectable difference at the Bonferroni level over 2 (97.5%: [-2.0, +0.2]); "
        "contradicted at 95% alone"
    )
    assert first.diff == alone.diff  # the table keeps the 95% interval
    assert second.verdict == "supported"
    assert judge.overall([first.verdict, second.verdict]).startswith("not shown: supported on 1")
    far = {"b": {0: 0.60, 1: 0.61, 2: 0.605}}  # a clear contradiction survives the correction
    runs.metrics |= {k: {s: {"AP": v} for s, v in d.items()} for k, d in far.items()}
    assert judge.judge_claim(runs, pair)[0].verdict == "contradicted"


def test_judge_learning_curve_and_sweep_thresholds():
    def iv(mean: float, n: int = 3, half: float = 0.01) -> stats.Interval:
        return stats.Interval(mean, mean - half, mean + half, n, 0.0)

    assert judge.converged(iv(judge.MOVE / 2)) and not judge.converged(iv(judge.MOVE))
    assert not judge.converged(iv(0.0, n=1)) and not judge.converged(None)
    assert judge.stable(iv(0.01), iv(0.0, half=0.01)) and not judge.stable(iv(0.02), iv(0.0))
    assert not judge.stable(None, iv(0.0)) and not judge.stable(iv(0.0), None)
    assert judge.no_signal(judge.SIGNAL / 2) and not judge.no_signal(judge.SIGNAL)


# -------------------------------------------------------------------------------- render


def test_render_parts_says_what_is_left_and_the_next_part():
    parts = [
        collect.PartStatus("one", 4, 4, 1200.0),
        collect.PartStatus("two", 8, 3, 600.0),
        collect.PartStatus("three", 2, 0, 0.0),
    ]
    text = render.parts_section(parts, jobs=2)
    assert "next part with runs left: **two**" in text
    assert "| one | 4 of 4 | 10 | done |" in text
    assert "| two | 3 of 8 | 5 | `make reproduce PART=two` |" in text
    assert "| three | 0 of 2 | – | `make reproduce PART=three` |" in text
    assert "Every part is done." in render.parts_section(parts[:1], jobs=2)
    assert render.parts_section([], jobs=2) == ""


def test_render_the_page_from_its_parts(tmp_path):
    doc = render.Document(tmp_path / "runs", tmp_path, [_step("figure1")])
    doc.add("## A section\n\n")
    doc.claims.append(judge.table2(1, 1))
    doc.protocol = "- **faster_rcnn**: trained.\n"
    times = [collect.StepTime("figure1", "Figure 1", 90.0), collect.StepTime("x", "X", None)]
    made = dt.datetime(2024, 5, 6, 7, 8)
    text = render.page(doc, "smoke", made, "a machine", 120.0, times)
    assert "Scale **smoke**; made 2024-05-06 07:08 on a machine. This run took 2.0 min" in text
    assert "The steps' own times add up to 1.5 min" in text
    assert "**Smoke run.**" in text and "- **faster_rcnn**: trained." in text
    assert "| Table 2 follows from Table 1 by Eq. 21, 26, 32 | supported |" in text
    assert text.index("## What the results say") < text.index("## A section")
    assert "| figure1 | Figure 1 | 90 |" in text and "| x | X | – |" in text
    assert (tmp_path / "tables" / "claims.csv").is_file()
    line = doc.provenance("figure1")  # not run: its planned command, linked to its stdout
    assert line.startswith("<sub>`huberkl figure1 --out ") and "(runs/figure1/stdout.txt)" in line


def test_render_a_table_links_only_the_runs_that_finished(tmp_path):
    from huberkl.report import detection

    root = tmp_path / "runs"
    for k in (0, 1):  # seed 0 finished; seed 1 is still training (a config, no metrics)
        (root / f"a-s{k}").mkdir(parents=True)
        (root / f"a-s{k}" / "config.yaml").write_text("seed: 0\n", encoding="utf-8")
    (root / "a-s0" / "metrics.json").write_text(json.dumps({"AP": 0.5}), encoding="utf-8")
    steps = [_step(f"a-s{k}", k, "a") for k in (0, 1)]
    doc = render.Document(root, tmp_path, steps)
    detection.table(doc, "T", "t", collect.Runs(root, steps), [("A", "a", None)], {})
    row = next(line for line in doc.parts[-1].splitlines() if line.startswith("| A |"))
    assert "[0](runs/a-s0/config.yaml)" in row and "a-s1" not in row


def test_render_html_is_one_file_with_its_figures(tmp_path):
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"\x89PNG")
    md = render.write("# T\n\n![A](figures/a.png) ![B](figures/missing.png)\n", tmp_path)
    assert md == tmp_path / "report.md"
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert 'src="data:image/png;base64,iVBORw=="' in html  # inlined
    assert 'src="figures/missing.png"' in html  # left as a link
    assert f"<style>{render.STYLE}</style>" in html


def test_package_keeps_its_public_names():
    import huberkl.report as report
    from huberkl.report import build, reference

    assert report.build_report is build.build_report
    assert report.export_reference is reference.export_reference
    assert report.portable is reference.portable
    assert Path(report.__file__).parent.name == "report"


def test_the_protocol_text_names_where_each_run_starts():
    from huberkl.report.detection import _start

    whole = {"weights": "outputs/reproduce/cpu/pretrain-retinanet-s0/checkpoint.pt"}
    assert "whole detector pretrained on the pretext set" in _start(whole)
    assert _start({"weights": "my/model.pt"}) == "trained from weights my/model.pt"
    assert "backbone (body and FPN) pretrained" in _start({"backbone_init": "x/pretrain-s0/c.pt"})
    assert _start({}) == "trained from scratch"
