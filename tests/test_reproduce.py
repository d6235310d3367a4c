"""`make reproduce`: the plan, the cache keys, and the report built from step outputs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from huberkl import reproduce
from huberkl.errors import InputError
from huberkl.report import build_report, export_reference
from huberkl.tables import markdown_table

REPO = Path(__file__).resolve().parents[1]


def _steps(scale: str, root: Path, **kw):
    return reproduce.build_steps(reproduce.load_plan(scale, **kw), root)


RUNS = (
    "publication",
    "implementation",
    "exp-a",
    "exp-b",
    "exp-c",
    "exp-a-balanced",
    "linear",
    "kl",
)


def test_cpu_plan_has_every_table_and_figure(tmp_path):
    names = [s.name for s in _steps("cpu", tmp_path)]
    assert names[:4] == ["figure1", "tables12", "figure2", "synth"]
    # The sweep: a set and a noise measurement per scale; 0.05 is the set of Tables 3-6.
    for s in ("0.005", "0.1"):
        assert f"synth-{s}" in names and f"noise-{s}" in names
    assert "noise-0.05" in names and "synth-0.05" not in names
    # Table 3's five settings with 4 paired seeds, the other tables with the first 3.
    seeds = {p: range(4 if p in RUNS[:5] else 3) for p in RUNS}
    frcnn = {n for n in names if n.startswith("frcnn-") and "-x" not in n}
    retina = {n for n in names if n.startswith("retinanet-") and "-x" not in n}
    assert frcnn == {f"frcnn-{p}-s{k}" for p in RUNS for k in seeds[p]}
    retina_runs = ("implementation", "exp-a", "exp-b", "exp-a-balanced")
    assert retina == {f"retinanet-{p}-s{k}" for p in retina_runs for k in range(3)}
    # The learning curve: the Implementation and Exp. A of each detector at ⅛, ½ and 2x,
    # at every seed of their table runs (4 for Faster R-CNN, 3 for RetinaNet).
    curve = {n for n in names if "-x" in n}
    assert curve == {
        f"{d}-{p}-x{m}-s{k}"
        for d, n in (("frcnn", 4), ("retinanet", 3))
        for p in ("implementation", "exp-a")
        for m in ("0.125", "0.5", "2")
        for k in range(n)
    }


def test_training_steps_use_the_synth_set_and_its_arguments(tmp_path):
    steps = {s.name: s for s in _steps("cpu", tmp_path)}
    synth = steps["synth"].overrides
    assert "+data.synth.noise_model=targets" in synth
    assert "+data.synth.noise_scales=[0.05,0.05,0.1,0.1]" in synth  # Exp. A-C's noise
    run = steps["retinanet-exp-a-s2"].overrides
    assert run[0] == "detect=protocol-retinanet" and run[-1] == "seed=2"
    assert f"data.root={tmp_path / 'synth'}" in run
    assert all(o in run for o in synth)  # so the trainer finds the set the synth step made
    kl = steps["frcnn-kl-s0"].overrides
    assert "params.stages.proposal.loss=kl" in kl and "params.stages.detection.loss=kl" in kl
    noise = steps["noise-0.1"]
    assert noise.words[1] == str(tmp_path / "synth-0.1" / "annotations" / "instances_train.json")
    assert noise.after is steps["synth-0.1"]  # a new set means a new measurement:
    assert noise.key() != reproduce.Step(noise.name, noise.words, noise.options).key()


def _resolved(step) -> dict:
    from omegaconf import OmegaConf

    from huberkl import config

    return OmegaConf.to_container(config.compose(step.overrides), resolve=True)


def test_seed_k_of_every_setting_differs_only_in_its_box_loss(tmp_path):
    """Pairing: two settings at one seed share every key but params (and the target coding)."""
    steps = {s.name: s for s in _steps("cpu", tmp_path)}
    base = _resolved(steps["frcnn-implementation-s1"])
    for name in ("frcnn-exp-a-s1", "frcnn-linear-s1", "frcnn-publication-s1"):
        other = _resolved(steps[name])
        assert other["seed"] == base["seed"] == 1
        assert other["data"] == base["data"]
        other["detect"]["model"].pop("target_encoding")
        b = {**base["detect"], "model": {**base["detect"]["model"]}}
        b["model"].pop("target_encoding")
        assert other["detect"] == b


def test_the_balanced_control_has_the_implementations_box_gradient(tmp_path):
    """Exp. A with λ rescaled: its saturated box gradient λ/σx per stage is the Implementation's."""
    from fractions import Fraction

    steps = {s.name: s for s in _steps("cpu", tmp_path)}

    def saturation(name):
        p = _resolved(steps[name])["params"]["stages"]
        return {k: Fraction(v["lam"]) / Fraction(v["sigma"]["x"]) for k, v in p.items()}

    impl = saturation("frcnn-implementation-s0")
    assert saturation("frcnn-exp-a-balanced-s0") == impl
    assert saturation("frcnn-exp-a-s0") != impl  # what the control controls for
    retina = saturation("retinanet-exp-a-balanced-s0")["proposal"]
    assert retina == saturation("retinanet-implementation-s0")["proposal"]


def _matched(root: Path, scale: str, sigma: str = "1/50") -> None:
    d = root / f"noise-{scale}" / "params"
    d.mkdir(parents=True)
    stage = f"{{loss: huber, alpha: '1', lam: '1/4', sigma: {{x: '{sigma}', y: '{sigma}', w: '1/25', h: '1/25'}}}}"
    (d / "matched.yaml").write_text(
        f"name: matched\ntitle: matched\nsource: test\nform: smooth-l1\n"
        f"stages:\n  proposal: {stage}\n  detection: {stage}\n",
        encoding="utf-8",
    )


def test_sweep_runs_read_the_measured_settings(tmp_path):
    plan = reproduce.load_plan("cpu")
    steps = reproduce.build_steps(plan, tmp_path)
    assert reproduce.sweep_steps(plan, tmp_path, steps) == []  # nothing measured yet
    _matched(tmp_path, "0.005")
    _matched(tmp_path, "0.05", "1/20")
    sweep = {s.name: s for s in reproduce.sweep_steps(plan, tmp_path, steps)}
    variants = ("l1", "alpha-x0.25", "matched", "alpha-x4")
    assert set(sweep) == {
        f"sweep-0.005-{v}-s{k}"
        for v in (*variants, "implementation", "implementation-alpha")
        for k in range(3)
    } | {f"sweep-0.05-{v}-s{k}" for v in (*variants, "implementation-alpha") for k in range(3)}
    # The Implementation on the Tables 3-6 set is the same run as Table 3's: not repeated.
    served = {s.name: s.serves for s in steps if s.serves}
    assert served == {f"frcnn-implementation-s{k}": ["sweep-0.05-implementation"] for k in range(3)}
    quarter = _resolved(sweep["sweep-0.005-alpha-x0.25-s1"])["params"]["stages"]
    assert quarter["proposal"]["alpha"] == "1/4" and quarter["detection"]["sigma"]["x"] == "1/50"
    l1 = _resolved(sweep["sweep-0.005-l1-s0"])["params"]["stages"]["detection"]
    assert l1["loss"] == "l1" and l1["lam"] == "1/4"
    run = sweep["sweep-0.005-matched-s2"].overrides
    assert f"data.root={tmp_path / 'synth-0.005'}" in run and run[-1] == "seed=2"


def test_full_scale_needs_coco_and_then_reads_it(tmp_path):
    with pytest.raises(InputError, match="COCO"):
        reproduce.load_plan("full")
    steps = _steps("full", tmp_path, coco="/data/coco")
    names = [s.name for s in steps]
    assert "synth" not in names and not any(n.startswith("noise-") for n in names)
    run = next(s for s in steps if s.name == "frcnn-exp-a-s0")
    assert run.overrides[:3] == ["detect=coco", "data=coco", "data.root=/data/coco"]
    assert run.nproc == max(1, __import__("torch").cuda.device_count())  # nproc: auto
    assert {s.seed for s in steps if s.seed is not None} == {0, 1, 2}


@pytest.mark.integration
def test_cache_key_is_stable_and_follows_the_config(tmp_path):
    # Every non-training step and every setting's seed 0 (the other seeds differ only in
    # seed=k; composing all 93 steps twice takes a minute).
    a = [s for s in _steps("cpu", tmp_path) if s.seed in (None, 0)]
    b = [s for s in _steps("cpu", tmp_path) if s.seed in (None, 0)]
    assert [s.key() for s in a] == [s.key() for s in b]
    step = next(s for s in a if s.name == "frcnn-exp-a-s0")
    changed = reproduce.Step(
        step.name, step.words, step.options, [*step.overrides, "detect.iters=7"]
    )
    assert changed.key() != step.key()


def test_plan_seeds_are_checked():
    with pytest.raises(InputError, match="scale.detect.seeds"):
        reproduce.load_plan("cpu", overrides=["scale.detect.seeds=[1,1]"])
    with pytest.raises(InputError, match="scale.sweep.scales"):
        reproduce.load_plan("cpu", overrides=["scale.sweep.scales=[0.1,-0.2]"])


def test_bad_scale_is_an_input_error():
    with pytest.raises(InputError, match="scale"):
        reproduce.load_plan("huge")


def test_markdown_table_escapes_pipes():
    text = markdown_table(["a", "b"], [["x|y", 1]])
    assert text.splitlines()[2] == "| x\\|y | 1 |"


SEED_EFFECT = (0.0, 0.03, -0.02, 0.01)  # shared by every setting at a seed: pairing cancels it


def _metrics(v: float, setting: str, k: int) -> dict:
    """``v`` moved by the seed's shared effect and the run's own noise (SD 0.3 points)."""
    import zlib

    own = np.random.default_rng(zlib.crc32(setting.encode())).normal(0.0, 0.003, 4)[k]
    v = v + SEED_EFFECT[k] + own
    return {"AP": v, "AP50": min(1.0, v + 0.25), "AP75": v}


def _fake_outputs(root: Path, steps, ap: dict[str, float], default: float = 0.5) -> None:
    """Step folders as the commands leave them, with made-up detection metrics (``ap`` per
    setting, moved by a seed effect that every setting shares) and run records."""
    for s in steps:
        d = root / s.name
        d.mkdir(parents=True, exist_ok=True)
        (d / ".done.json").write_text(
            json.dumps({"key": "k", "argv": s.argv(d), "seconds": 12.0}), encoding="utf-8"
        )
        (d / "config.yaml").write_text(
            "seed: 0\ndetect:\n  iters: 400\n  batch_size: 4\n  optim: {name: adamw, lr: 0.001}\n"
            "  schedule: {name: cosine}\n  model: {arch: faster_rcnn, backbone: tiny, min_size: 128, weights: null}\n",
            encoding="utf-8",
        )
        if s.seed is not None:
            v = ap.get(s.setting, default)
            (d / "metrics.json").write_text(
                json.dumps(_metrics(v, s.setting, s.seed)), encoding="utf-8"
            )
            info = {
                "description": "huberkl synthetic shapes",
                "size": 128,
                "images": 800,
                "val_images": 200,
                "noise_description": "targets: Laplace 0.05, 0.05, 0.1, 0.1",
            }
            record = {
                "model": {
                    "arch": s.setting.split("-")[0],
                    "backbone": "tiny",
                    "parameters": 4_334_877,
                },
                "device": "cpu",
                "data": {"name": "synth", "info": info},
            }
            (d / "run.json").write_text(json.dumps(record), encoding="utf-8")
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
        "solver,noise,slope,intercept,r2,theory_slope,scales,at_edge,artefacts\n"
        "exact,cauchy,0.4,0.01,0.97,0.395,8,0,0\ngd,cauchy,0.5,0.2,0.5,0.395,8,0,3\n"
        "exact,laplace,0.05,0.0,0.85,0.0,8,1,0\n",
        encoding="utf-8",
    )


def _measured(root: Path, scale: str, x: float) -> None:
    """A noise step's result.json as ``huberkl noise --format json`` writes it."""
    coords = {
        c: {"family": "laplace", "scale": x * f, "ci95": [0.9 * x * f, 1.1 * x * f]}
        for c, f in zip("xywh", (1, 1, 2, 2), strict=True)
    }
    (root / f"noise-{scale}" / "result.json").write_text(
        json.dumps({"coordinates": coords}), encoding="utf-8"
    )


# The sweep tests' plan: four scales, the last one (0.2) where nothing is learnt.
SCALES = ("0.01", "0.02", "0.05", "0.2")  # 20x apart: the report can test that the best α moves
FOUR_SCALES = [f"scale.sweep.scales=[{','.join(SCALES)}]", "scale.parts=null"]


def _report(
    tmp_path, ap: dict[str, float], sweep: bool = False, scales=SCALES, drop: str = ""
) -> str:
    """The cpu report on faked run outputs (``ap``: a setting's mean AP); ``drop``: a glob of
    step folders removed first (runs not done yet)."""
    root = tmp_path / "reproduce" / "cpu"
    over = [f"scale.sweep.scales=[{','.join(scales)}]", "scale.parts=null"]
    plan = reproduce.load_plan("cpu", overrides=over)
    steps = reproduce.build_steps(plan, root)
    if sweep:
        for s in scales:
            _matched(root, s, "1/50")
        steps += reproduce.sweep_steps(plan, root, steps)
    _fake_outputs(root, steps, ap)
    for folder in root.glob(drop) if drop else []:
        shutil.rmtree(folder)
    if sweep:
        for s in scales:
            _measured(root, s, float(s))
    md = build_report(root, steps, plan, elapsed=60.0, dest=tmp_path / "out")
    return md.read_text(encoding="utf-8")


def _verdict(text: str, claim: str) -> str:
    row = next(line for line in text.splitlines() if line.startswith(f"| {claim} |"))
    return row.split(" | ")[1]


WORST = "The Publication settings (label noise w_a) perform worst (Table 3, mAP@[.5:.95])"
MOVES = (
    "Derived (Sec. 5-6): at every scale the matched α beats α × ¼ and α × 4, i.e. the best "
    "α·σ lies within a factor 4 of the measured noise, if mAP has one peak in α (mAP@0.75)"
)
MOVED = "| Derived (Sec. 5): the best α·σ moves with the label noise"
AP75 = "Smaller noise scales (Exp. A-C) raise mAP@0.75 over the Implementation (Table 3)"


def test_report_reads_every_step_and_judges_the_claims(tmp_path):
    ap = {"frcnn-publication": 0.30, "frcnn-exp-a": 0.55, "frcnn-exp-b": 0.53, "frcnn-exp-c": 0.56}
    text = _report(tmp_path, ap)
    assert "80/80 cells equal the paper's" in text
    assert _verdict(text, WORST) == "supported"
    assert _verdict(text, AP75) == "supported"
    row = next(line for line in text.splitlines() if line.startswith("| Publication | 55.5 ± "))
    assert row.split(" | ")[4] == "4" and "| 42.8 | 18.7 | 21.0 |" in row  # 4 seeds; the paper
    assert "| Baseline [18] | not trained |" in text
    # Table 5's claim is "at most a very slight degradation", judged against the 1-point
    # margin: equal settings (0.3-point run noise) lie inside it.
    from huberkl.report import detection as det

    assert _verdict(text, det.table5_claims()[0][0]) == "supported"
    assert _verdict(text, det.table6_claims()[0][0]) == "supported"
    cauchy = "Optimal α grows near-linearly with the cauchy noise scale (Sec. 5, Fig. 2)"
    laplace = "Optimal α grows near-linearly with the laplace noise scale (Sec. 5, Fig. 2)"
    assert _verdict(text, cauchy) == "supported"
    assert _verdict(text, laplace) == "contradicted"  # optima stay near α -> 0
    assert "3 of 8 optima flagged as optimiser artefacts" in text
    assert "D_{α,1/α} ≤ H_α ≤ D_{α/2,1/α} (Eq. 20) | supported" in text
    # The prose comes from the run records, and the protocol's power is printed.
    assert "backbone `tiny` (4.33 M parameters, trained from scratch), 400 adamw steps" in text
    assert "targets: Laplace 0.05, 0.05, 0.1, 0.1" in text and "**Seeds**: 0, 1, 2, 3" in text
    assert "detects a true difference of **" in text
    # RetinaNet has one box stage: its control is not named after Faster R-CNN's proposals.
    table4 = text.split("## Table 4")[1].split("## Table 5")[0]
    assert "| Exp. A, λ/σ of the Implementation on x, y (control) |" in table4
    assert "proposal" not in table4
    html = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert "data:image/png;base64," in html and "<table>" in html
    tables = tmp_path / "out" / "tables"
    assert {p.stem for p in tables.glob("*.csv")} >= {
        "table1",
        "table2",
        "table3",
        "table3_comparisons",
        "table4",
        "table5",
        "table6",
        "claims",
    }
    root = tmp_path / "reproduce" / "cpu"
    ref = export_reference(tmp_path / "out", root, tmp_path / "ref")
    ref_text = ref.read_text(encoding="utf-8")
    assert "](runs/frcnn-exp-a-s0/config.yaml)" in ref_text and "](reproduce/" not in ref_text
    assert (tmp_path / "ref" / "runs" / "frcnn-exp-a-s3" / "metrics.json").is_file()


def test_exp_c_balances_a_and_b_and_the_ceiling_at_half_iou_is_said(tmp_path):
    ap = {s: 0.70 for s in ("frcnn-implementation", "frcnn-exp-a", "frcnn-exp-b")}
    text = _report(tmp_path, ap | {"frcnn-exp-c": 0.72, "frcnn-publication": 0.6})
    from huberkl.report import detection as det

    claims = {c: cs for c, cs in det.table3_claims()}
    balance = next(c for c in claims if c.startswith("Experiment C balances"))
    trend = next(c for c in claims if c.startswith("Experiment B loses mAP@0.5"))
    assert [(x.better, x.other, x.metric, x.kind) for x in claims[balance]] == [
        ("frcnn-exp-c", "frcnn-exp-b", "AP50", "greater"),
        ("frcnn-exp-c", "frcnn-exp-a", "AP75", "greater"),
        ("frcnn-exp-c", "frcnn-exp-a", "AP50", "not-worse"),
        ("frcnn-exp-c", "frcnn-exp-b", "AP75", "not-worse"),
    ]
    assert _verdict(text, balance) == "supported"  # C 2 points up at both thresholds
    assert _verdict(text, trend).startswith("no detectable difference")  # B = Implementation
    assert "| linear targets − Implementation | AP50 |" in text  # Tables 5-6: all three metrics
    assert text.count("mAP@0.5 is near its ceiling here (95.") == 3  # Tables 3, 5 and 6


def test_report_flags_a_contradiction(tmp_path):
    text = _report(tmp_path, {"frcnn-publication": 0.9})  # best: the paper's claim fails
    assert _verdict(text, WORST) == "contradicted"


def test_differences_within_the_seed_noise_are_not_effects(tmp_path):
    """Exp. A is 0.4 points up, inside the runs' own noise: no detectable difference."""
    text = _report(tmp_path, {"frcnn-exp-a": 0.504, "frcnn-publication": 0.30})
    row = next(
        line for line in text.splitlines() if "| Experiment A − Implementation | AP75 |" in line
    )
    assert "| no detectable difference (±" in row
    assert _verdict(text, WORST) == "supported"


def test_report_shows_the_noise_sweep(tmp_path):
    # At every scale the matched α is best, and beats the Implementation.
    ap = {}
    for s in SCALES:
        ap |= {
            f"sweep-{s}-matched": 0.6,
            f"sweep-{s}-alpha-x0.25": 0.55,
            f"sweep-{s}-alpha-x4": 0.52,
            f"sweep-{s}-l1": 0.57,
            f"sweep-{s}-implementation": 0.5,
        }
    ap["frcnn-implementation"] = 0.5
    text = _report(tmp_path, ap, sweep=True)
    assert _verdict(text, MOVES) == "supported"
    beats = (
        "Derived (Sec. 5): settings read off the measured noise beat the fixed implementation "
        "preset (mAP@0.75)"
    )
    assert _verdict(text, beats) == "supported"
    moves = next(line for line in text.splitlines() if line.startswith(MOVED))
    assert moves.split(" | ")[1] == "supported"  # 0.01 beats 4x, 0.2 beats ¼x: 20x apart
    assert "0.01: matched − α × 4" in moves and "0.2: matched − α × ¼" in moves
    assert "both together mean the best α·σ moves with the noise" in text
    assert "| 0.01 | matched | 0.0100 | 0.01 | " in text  # best α·σx against the injected scale
    assert "| 0.2 | 0.2, 0.2, 0.4, 0.4 | 0.2000 laplace [0.1800, 0.2200] |" in text
    assert (tmp_path / "out" / "figures" / "detect_sweep.png").stat().st_size > 10_000


def test_every_smoke_training_step_is_toy_sized(tmp_path):
    """`SCALE=smoke` is a few-minute pipeline check: an override of a cpu step that sets its
    own length (the RetinaNet pretraining's 2400 steps) must not leak into it."""
    steps = reproduce.all_steps(reproduce.load_plan("smoke"), tmp_path)
    runs = [st for st in steps if st.resumable]
    assert any(st.name.startswith("pretrain-retinanet") for st in runs)
    for st in runs:
        iters = st.iters()
        assert iters <= 8, f"{st.name}: detect.iters={iters}"


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
    root = tmp_path / "outputs" / "reproduce" / "smoke"
    n_steps = len(reproduce.all_steps(reproduce.load_plan("smoke"), root))
    assert again.stdout.count("cached") == n_steps


def test_a_sweep_set_not_yet_trained_is_not_run_rather_than_no_signal(tmp_path):
    root = tmp_path / "reproduce" / "cpu"
    plan = reproduce.load_plan("cpu", overrides=FOUR_SCALES)
    steps = reproduce.build_steps(plan, root)
    for s in SCALES:
        _matched(root, s, "1/50")
    sweep = reproduce.sweep_steps(plan, root, steps)
    _fake_outputs(root, [*steps, *[st for st in sweep if st.scale == 0.01]], {}, default=0.5)
    text = build_report(root, [*steps, *sweep], plan, elapsed=1.0, dest=tmp_path / "o")
    text = text.read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith(f"| {MOVES} |"))
    assert "no signal" not in row and "0.02: matched − α × ¼ not run" in row


def test_a_sweep_set_names_its_best_alpha_only_once_its_grid_has_run(tmp_path):
    """A set half trained names no best α (the best of L1 and ¼ says nothing of 1 and 4);
    a set whose α values share only some seeds is judged on those seeds alone."""
    root = tmp_path / "reproduce" / "cpu"
    plan = reproduce.load_plan("cpu", overrides=FOUR_SCALES)
    steps = reproduce.build_steps(plan, root)
    for s in SCALES:
        _matched(root, s, "1/50")
    sweep = reproduce.sweep_steps(plan, root, steps)
    half = [st for st in sweep if st.scale == 0.01 and st.setting.endswith(("-l1", "-x0.25"))]
    grid = ("-l1", "-x0.25", "-matched", "-x4")
    ragged = [
        st
        for st in sweep
        if st.scale == 0.02 and st.setting.endswith(grid) and (st.seed == 0 or "x4" in st.setting)
    ]
    ap = {"sweep-0.02-alpha-x4": 0.7, "sweep-0.01-l1": 0.8}
    _fake_outputs(root, [*steps, *half, *ragged], ap)
    md = build_report(root, [*steps, *sweep], plan, elapsed=1.0, dest=tmp_path / "o")
    text = md.read_text(encoding="utf-8")
    assert "| 0.01 | not yet: 2 of 4 α values trained | – | 0.01 | – |" in text
    row = next(line for line in text.splitlines() if line.startswith("| 0.02 | α × 4"))
    assert "(seeds 0: those every α has run)" in row
    assert row.endswith("| L1 (α → 0), α × ¼, matched |")  # one seed: no interval, all tie


def test_a_sweep_set_where_nothing_is_learnt_tests_nothing(tmp_path):
    ap = {"frcnn-implementation": 0.5}
    for s in SCALES[:3]:
        ap |= {f"sweep-{s}-matched": 0.6, f"sweep-{s}-alpha-x0.25": 0.55}
    ap |= {"sweep-0.02-alpha-x4": 0.7}  # the optimum beyond the grid at 0.02
    ap |= {"sweep-0.05-alpha-x4": 0.6}  # as good as matched at 0.05: not told apart
    ap |= {f"sweep-0.2-{v}": 0.01 for v in ("matched", "alpha-x0.25", "alpha-x4", "l1")}
    ap["sweep-0.2-implementation"] = ap["sweep-0.2-implementation-alpha"] = 0.02
    text = _report(tmp_path, ap, sweep=True)
    row = next(line for line in text.splitlines() if line.startswith(f"| {MOVES} |"))
    assert "0.2: matched" not in row and "not tested at 0.2 (no signal" in row
    assert row.split(" | ")[1].endswith("(sets with signal only; none at 0.2)")
    moves = next(line for line in text.splitlines() if line.startswith(MOVED))
    want = "cannot test (the sets with signal span 5x; it needs 16x)"  # 0.01-0.05
    assert moves.split(" | ")[1] == want
    assert "| 0.2 | no signal: mAP@0.75 < 5 for every setting | – |" in text
    assert "| 0.02 | α × 4 (the grid's edge: the optimum may lie beyond) | 0.0800 |" in text
    best = text.split("**Best α per set**")[1].splitlines()
    row = {ln.split(" | ")[0]: ln for ln in best if ln.startswith("| 0.")}
    assert row["| 0.02"].endswith("| none |")  # 10 points above the rest, SD 0.3: a finding
    assert row["| 0.05"].endswith(("| α × 4 |", "| matched |"))  # the other of the two


def test_sets_less_than_16x_apart_cannot_show_that_the_best_alpha_moves(tmp_path):
    ap = {f"sweep-{s}-{v}": 0.5 for s in ("0.02", "0.05", "0.2") for v in ("matched", "l1")}
    text = _report(tmp_path, ap | {"frcnn-implementation": 0.5}, True, ("0.02", "0.05", "0.2"))
    moves = next(line for line in text.splitlines() if line.startswith(MOVED))
    assert moves.split(" | ")[1] == "cannot test (the sets with signal span 10x; it needs 16x)"
    claims = [ln.split(" | ")[0] for ln in text.splitlines() if ln.startswith("| Derived")]
    assert claims[1].startswith(MOVED)  # right after the claim it sharpens
    assert "one fixed α·σ between 0.05 and 0.08 would pass every comparison" in text


def test_report_shows_the_learning_curve_and_flags_a_moving_protocol(tmp_path):
    """The curve's 2x runs gain 3 points on the Implementation: not converged, said at the
    top of the claims and beside the verdicts; the schedule table and the figure are there."""
    ap = {
        "frcnn-implementation-x2": 0.53,
        "frcnn-exp-a-x2": 0.53,
        "frcnn-implementation-x0.125": 0.3,
        "frcnn-exp-a-x0.125": 0.2,
    }
    text = _report(tmp_path, ap)
    assert "## Is the protocol converged? Learning curves" in text
    assert "**faster_rcnn, 3200 steps, 4 seeds: NOT converged.**" in text
    assert "**retinanet, 2400 steps, 3 seeds: converged.**" in text  # its 2x runs moved nothing
    claims = text.split("## What the results say about the paper's claims")[1]
    assert claims.lstrip().startswith("**Caveat: the protocol is not converged for faster_rcnn**")
    row = next(
        ln
        for ln in text.splitlines()
        if ln.startswith("| frcnn-exp-a − frcnn-implementation AP75 |")
    )
    assert row.count("|") == 6  # the difference at ⅛, ½, 1 and 2x the schedule
    eighth = float(row.split(" | ")[1].split(" [")[0])
    assert eighth == pytest.approx(-10.0, abs=0.5)  # at ⅛ the schedule: 0.2 − 0.3, plus run noise
    assert (tmp_path / "out" / "figures" / "learning_curve.png").stat().st_size > 10_000
    tables = {p.stem for p in (tmp_path / "out" / "tables").glob("*.csv")}
    assert {"convergence_faster_rcnn", "schedule_faster_rcnn", "schedule_retinanet"} <= tables


def test_verdicts_before_their_convergence_check_are_called_provisional(tmp_path):
    """RetinaNet's table runs are done but not its curve: its verdicts stand, flagged as
    provisional above the claims; Faster R-CNN, checked and converged, gets no caveat."""
    text = _report(tmp_path, {}, drop="retinanet-*-x*-s*")
    assert "**retinanet, 2400 steps, 3 seeds: not yet checked" in text
    claims = text.split("## What the results say about the paper's claims")[1].lstrip()
    assert claims.startswith("**Caveat: convergence is not yet checked for retinanet**")
    assert "not converged for" not in text and "checked for faster_rcnn" not in text


def test_a_detector_with_no_runs_done_needs_no_caveat(tmp_path):
    text = _report(tmp_path, {}, drop="retinanet-*")
    assert "Caveat" not in text
