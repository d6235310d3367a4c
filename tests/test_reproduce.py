"""`make reproduce`: the plan, the cache keys, and the report built from step outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from huberkl import reproduce
from huberkl.errors import InputError
from huberkl.report.build import build_report, export_reference
from huberkl.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]


def _steps(scale: str, root: Path, **kw):
    return reproduce.build_steps(reproduce.load_plan(scale, **kw), root)


def test_cpu_plan_has_every_table_and_figure(tmp_path):
    names = [s.name for s in _steps("cpu", tmp_path)]
    assert names[:4] == ["figure1", "tables12", "figure2", "synth"]
    frcnn = {n for n in names if n.startswith("frcnn-")}
    retina = {n for n in names if n.startswith("retinanet-")}
    assert frcnn == {
        f"frcnn-{p}"
        for p in ("publication", "implementation", "exp-a", "exp-b", "exp-c", "linear", "kl")
    } | {"frcnn-implementation-seed1", "frcnn-implementation-seed2"}
    assert retina == {f"retinanet-{p}" for p in ("implementation", "exp-a", "exp-b")}


def test_training_steps_use_the_synth_set_and_its_arguments(tmp_path):
    steps = {s.name: s for s in _steps("cpu", tmp_path)}
    synth = steps["synth"].overrides
    assert "data.synth.noise=laplace" in synth and "data.synth.noise_scale=0.05" in synth
    run = steps["retinanet-exp-a"].overrides
    assert run[0] == "detect=retinanet"
    assert f"data.root={tmp_path / 'synth'}" in run
    assert all(o in run for o in synth)  # so the trainer finds the set the synth step made
    kl = steps["frcnn-kl"].overrides
    assert "params.stages.proposal.loss=kl" in kl and "params.stages.detection.loss=kl" in kl


def test_full_scale_needs_coco_and_then_reads_it(tmp_path):
    with pytest.raises(InputError, match="COCO"):
        reproduce.load_plan("full")
    steps = _steps("full", tmp_path, coco="/data/coco")
    assert "synth" not in [s.name for s in steps]
    run = next(s for s in steps if s.name == "frcnn-exp-a")
    assert run.overrides[:3] == ["detect=coco", "data=coco", "data.root=/data/coco"]
    assert run.nproc == max(1, __import__("torch").cuda.device_count())  # nproc: auto


def test_cache_key_is_stable_and_follows_the_config(tmp_path):
    a = _steps("cpu", tmp_path)
    b = _steps("cpu", tmp_path)
    assert [s.key() for s in a] == [s.key() for s in b]
    step = next(s for s in a if s.name == "frcnn-exp-a")
    changed = reproduce.Step(
        step.name, step.words, step.options, [*step.overrides, "detect.iters=7"]
    )
    assert changed.key() != step.key()


def test_bad_scale_is_an_input_error():
    with pytest.raises(InputError, match="scale"):
        reproduce.load_plan("huge")


def test_markdown_table_escapes_pipes():
    text = markdown_table(["a", "b"], [["x|y", 1]])
    assert text.splitlines()[2] == "| x\\|y | 1 |"


def _fake_outputs(root: Path, steps, ap: dict[str, float]) -> None:
    """Step folders as the commands leave them, with made-up detection metrics."""
    for s in steps:
        d = root / s.name
        d.mkdir(parents=True)
        (d / ".done.json").write_text(
            json.dumps({"key": s.key(), "argv": s.argv(d), "seconds": 12.0}), encoding="utf-8"
        )
        (d / "config.yaml").write_text("seed: 0\n", encoding="utf-8")
        if s.name in ap:
            v = ap[s.name]
            (d / "metrics.json").write_text(
                json.dumps({"AP": v, "AP50": min(1, 2 * v), "AP75": v}), encoding="utf-8"
            )
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 16
    (root / "figure1" / "figure1.png").write_bytes(png)
    (root / "figure1" / "figure1.csv").write_text(
        "alpha,x,huber,lower,upper,d_huber,d_lower,d_upper\n1,0.5,0.125,0.1065,0.1361,0.5,0.39,0.63\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "huberkl.cli", "interpret", "--preset", "all", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        encoding="utf-8",
    ).stdout
    (root / "tables12" / "stdout.txt").write_text(out, encoding="utf-8")
    (root / "figure2" / "figure2.png").write_bytes(png)
    (root / "figure2" / "fit.csv").write_text(
        "solver,noise,slope,intercept,r2,theory_slope,scales,artefacts\n"
        "exact,cauchy,0.4,0.01,0.97,0.395,8,0\ngd,cauchy,0.5,0.2,0.5,0.395,8,3\n"
        "exact,laplace,0.05,0.0,0.3,0.0,8,0\n",
        encoding="utf-8",
    )


def test_report_reads_every_step_and_judges_the_claims(tmp_path):
    root = tmp_path / "reproduce" / "cpu"
    plan = reproduce.load_plan("cpu")
    steps = reproduce.build_steps(plan, root)
    ap = {s.name: 0.5 for s in steps if s.resumable}
    ap["frcnn-publication"] = 0.30  # worst, as in the paper
    ap["frcnn-exp-a"] = 0.55
    _fake_outputs(root, steps, ap)
    md = build_report(root, steps, plan, elapsed=60.0, dest=tmp_path / "out")
    text = md.read_text(encoding="utf-8")
    assert "80/80 cells equal the paper's" in text
    assert "| publication | 60.0 | 30.0 | 30.0 | 42.8 | 18.7 | 21.0 |" in text
    assert (
        "| The Publication settings (label noise w_a) perform worst (Table 3) | supported |" in text
    )
    cauchy = (
        "| Optimal α grows near-linearly with the cauchy noise scale (Sec. 5, Fig. 2) | supported |"
    )
    laplace = "| Optimal α grows near-linearly with the laplace noise scale (Sec. 5, Fig. 2) | contradicted |"
    assert cauchy in text and laplace in text
    assert "3 of 8 optima flagged as optimiser artefacts" in text
    assert "D_{α,1/α} ≤ H_α ≤ D_{α/2,1/α} (Eq. 20) | supported" in text
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<table>" in html
    tables = tmp_path / "out" / "tables"
    assert {p.stem for p in tables.glob("*.csv")} >= {
        "table1",
        "table2",
        "table3",
        "table4",
        "table5",
        "table6",
        "claims",
    }
    ref = export_reference(md.parent, root, tmp_path / "ref")
    ref_text = ref.read_text(encoding="utf-8")
    assert "](runs/frcnn-exp-a/config.yaml)" in ref_text and "](reproduce/" not in ref_text
    assert (tmp_path / "ref" / "runs" / "frcnn-exp-a" / "metrics.json").is_file()


def test_report_flags_a_contradiction(tmp_path):
    root = tmp_path / "reproduce" / "cpu"
    plan = reproduce.load_plan("cpu")
    steps = reproduce.build_steps(plan, root)
    ap = {s.name: 0.5 for s in steps if s.resumable}
    ap["frcnn-publication"] = 0.9  # best: the paper's claim fails
    _fake_outputs(root, steps, ap)
    text = build_report(root, steps, plan, elapsed=None, dest=tmp_path / "out").read_text(
        encoding="utf-8"
    )
    assert (
        "| The Publication settings (label noise w_a) perform worst (Table 3) | contradicted |"
        in text
    )


def test_differences_within_the_seed_span_are_noise(tmp_path):
    root = tmp_path / "reproduce" / "cpu"
    plan = reproduce.load_plan("cpu")
    steps = reproduce.build_steps(plan, root)
    ap = {s.name: 0.5 for s in steps if s.resumable}
    ap["frcnn-implementation-seed1"] = 0.56  # seeds span 6 points
    ap["frcnn-publication"] = 0.47  # 3 points below the rest: inside the span
    _fake_outputs(root, steps, ap)
    text = build_report(root, steps, plan, elapsed=None, dest=tmp_path / "out").read_text(
        encoding="utf-8"
    )
    assert "**Run-to-run noise.**" in text and "| 50.0–56.0 |" in text
    claim = "| The Publication settings (label noise w_a) perform worst (Table 3) | within noise |"
    assert claim in text


@pytest.mark.slow
def test_smoke_reproduction_end_to_end(tmp_path):
    """`make reproduce SCALE=smoke` minus the set-up, in a scratch folder; a rerun is all cached."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "huberkl.reproduce", "--scale", "smoke"]
    subprocess.run(cmd, cwd=tmp_path, env=env, check=True, capture_output=True, timeout=600)
    assert (tmp_path / "outputs" / "report.md").is_file()
    again = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
        encoding="utf-8",
    )
    n_steps = len(_steps("smoke", tmp_path / "outputs" / "reproduce" / "smoke"))
    assert again.stdout.count("cached") == n_steps
