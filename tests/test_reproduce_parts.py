"""`make reproduce PART=...`: parts, the learning curve, committed records and their verdicts."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import pytest

from huberkl import plan as plans
from huberkl import reproduce, stats
from huberkl.errors import InputError
from huberkl.report import curve, export_reference, portable
from huberkl.report.collect import Runs
from huberkl.report.judge import overall
from huberkl.schema import ScaleDetect, ScalePart, ScaleRun, ScaleSchema


def _cpu(tmp_path: Path):
    p = plans.load_plan("cpu")
    return p, plans.build_steps(p, tmp_path)


def test_curve_runs_are_the_table_runs_at_other_schedule_lengths(tmp_path):
    p, steps = _cpu(tmp_path)
    by = {s.name: s for s in steps}
    n = plans.schedule_length(p, "faster_rcnn")
    for m in (0.125, 0.5, 2):
        st = by[f"frcnn-exp-a-x{m:g}-s1"]
        table = by["frcnn-exp-a-s1"]
        # Same overrides (data, params, seed) but the schedule length; its own part.
        assert st.overrides == [*table.overrides[:-1], f"detect.iters={round(m * n)}", "seed=1"]
        assert st.part == "curves" and st.setting == f"frcnn-exp-a-x{m:g}" and st.seed == 1
    assert by["retinanet-exp-a-s0"].part == "retinanet" and by["frcnn-kl-s0"].part == "tables"


def test_curve_and_parts_are_checked():
    with pytest.raises(InputError, match="scale.curve.runs"):
        plans.load_plan("cpu", overrides=["scale.curve.runs=[nope]"])
    with pytest.raises(InputError, match="scale.curve.multiples"):
        plans.load_plan("cpu", overrides=["scale.curve.multiples=[0,2]"])
    with pytest.raises(InputError, match="--part 'tablez'.*curves-a"):
        reproduce.check_part("tablez", plans.load_plan("cpu"))
    reproduce.check_part("sweep", plans.load_plan("cpu"))  # a group is a part too
    runs = [ScaleRun(name="a")]
    bad = {
        "scale.parts.x.groups": {"x": ScalePart(groups=["tablez"])},
        "scale.parts.x.runs": {"x": ScalePart(runs=["nope"])},
        "scale.parts.x.scales": {"x": ScalePart(scales=[0.3])},
        "scale.parts": {"tables": ScalePart(seeds=[0])},
    }
    for key, parts in bad.items():
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            ScaleSchema(name="x", detect=ScaleDetect(runs=runs), parts=parts)


def test_the_parts_cover_every_training_run_once(tmp_path):
    """The CPU plan's parts cover its runs (sweep runs included); they overlap only where
    the curve's parts take the table runs they extend (the first part to run trains them)."""
    p = plans.load_plan("cpu")
    steps = plans.build_steps(p, tmp_path)
    sweep = [
        plans.Step(f"sweep-{v:g}-{k}-s{seed}", ["detect"], seed=seed, part="sweep", scale=v)
        for v in p.scale.sweep.scales
        for k in range(6)
        for seed in p.scale.sweep.seeds
    ]
    runs = [s for s in [*steps, *sweep] if s.seed is not None]
    for st in runs:
        owners = [name for name in p.scale.parts if plans.in_part(st, p, name)]
        curve_base = st.run in p.scale.curve.runs
        assert len(owners) == 1 or (curve_base and len(owners) == 2), (st.name, owners)
    by = {s.name: s for s in runs}
    assert plans.in_part(by["frcnn-exp-a-x2-s1"], p, "curves-a")
    assert plans.in_part(by["frcnn-exp-a-s1"], p, "curves-a")  # its multiple 1
    assert not plans.in_part(by["frcnn-exp-a-s1"], p, "curves-b")
    assert plans.in_part(by["frcnn-exp-a-x2-s3"], p, "curves-c")  # every seed of Table 3
    assert "retinanet-exp-a-x2-s3" not in by  # RetinaNet runs 3 seeds, its curve too
    assert plans.in_part(by["retinanet-exp-a-x0.5-s2"], p, "retinanet-b")
    assert plans.in_part(by["retinanet-exp-a-s2"], p, "retinanet-a")
    assert plans.in_part(by["retinanet-exp-b-s1"], p, "retinanet-c")
    assert plans.in_part(by["sweep-0.1-3-s2"], p, "sweep-e")
    assert plans.in_part(by["frcnn-exp-a-x2-s1"], p, "curves")  # the groups stay parts


def _record(dest: Path, step: plans.Step, key: str, ap: float = 0.5) -> None:
    d = dest / "runs" / step.name
    d.mkdir(parents=True, exist_ok=True)
    (d / ".done.json").write_text(json.dumps({"key": key, "seconds": 3.0}), encoding="utf-8")
    (d / "metrics.json").write_text(json.dumps({"AP": ap, "AP75": ap}), encoding="utf-8")
    (d / "run.json").write_text(
        json.dumps({"cwd": "/x", "argv": ["/x/cli.py", "detect"]}), encoding="utf-8"
    )


def test_a_committed_record_with_the_same_key_stands_in_for_its_run(tmp_path):
    step = plans.Step("frcnn-exp-a-s0", ["detect", "train"], setting="frcnn-exp-a", seed=0)
    ref, out = tmp_path / "reference", tmp_path / "run" / step.name
    _record(ref, step, "abc")
    assert not reproduce.adopt(step, out, "other", ref)  # another config: trained again
    assert not out.exists()
    assert reproduce.adopt(step, out, "abc", ref)
    assert reproduce.is_done(step, out, "abc") and (out / "metrics.json").is_file()
    figure = plans.Step("figure2", ["toy"])  # not a training run: always made here
    _record(ref, figure, "k")
    assert not reproduce.adopt(figure, tmp_path / "run" / "figure2", "k", ref)


@pytest.fixture
def ran(tmp_path, monkeypatch) -> list[str]:
    """``reproduce`` with every step faked: the names of the steps it would run, in order."""
    names: list[str] = []
    monkeypatch.setattr(reproduce, "ROOT", tmp_path / "reproduce")
    monkeypatch.setattr(reproduce.Step, "key", lambda self: "k-" + self.name)
    monkeypatch.setattr(
        reproduce, "run_step", lambda st, out, key, log, echo=True: names.append(st.name) or 0.0
    )
    monkeypatch.setattr(
        reproduce,
        "_run_parallel",
        lambda todo, jobs, console: names.extend(s.name for s, _, _ in todo),
    )
    monkeypatch.setattr("huberkl.report.build_report", lambda *a, **k: tmp_path / "r.md")
    return names


def test_a_part_trains_only_its_runs(tmp_path, ran):
    """--part retinanet: the figures, sets and measurements, and RetinaNet's runs only."""
    reproduce.reproduce("cpu", part="retinanet", reference=tmp_path / "none")
    trained = [n for n in ran if n.startswith(("frcnn", "retinanet", "sweep"))]
    assert trained and all(n.startswith("retinanet-") and "-x" not in n for n in trained)
    assert {"figure1", "tables12", "figure2", "synth"} <= set(ran)
    ran.clear()
    reproduce.reproduce("cpu", part="curves-b", reference=tmp_path / "none")
    trained = sorted(n for n in ran if n.startswith(("frcnn", "retinanet", "sweep")))
    want = [
        f"frcnn-{s}{m}-s2"
        for s in ("exp-a", "implementation")
        for m in ("", "-x0.125", "-x0.5", "-x2")
    ]
    assert trained == sorted(want)
    assert "pretrain-s0" in ran  # the one shared backbone its runs start from


@pytest.mark.integration
def test_without_a_part_the_next_part_with_runs_left_is_trained(tmp_path, monkeypatch, ran, capsys):
    """A plain ``make reproduce`` stays within one part: the first with runs left, in order."""
    done: set[str] = set()
    monkeypatch.setattr(reproduce, "is_done", lambda step, out, key: step.name in done)

    def trained() -> list[str]:
        return sorted(n for n in ran if n.startswith(("frcnn", "retinanet", "sweep")))

    def multiples(seed: int) -> list[str]:
        return [
            f"frcnn-{s}{m}-s{seed}"
            for s in ("exp-a", "implementation")
            for m in ("", "-x0.125", "-x0.5", "-x2")
        ]

    reproduce.reproduce("cpu", reference=tmp_path / "none")
    assert trained() == sorted([*multiples(0), *multiples(1)])  # curves-a, the first part
    assert "next: `make reproduce` trains part curves-b" in capsys.readouterr().out
    done.update(ran)
    ran.clear()
    reproduce.reproduce("cpu", part="next", reference=tmp_path / "none")
    assert trained() == sorted(multiples(2))  # curves-b
    assert "pretrain-s0" not in ran  # done with curves-a
    ran.clear()
    reproduce.reproduce("cpu", part="all", reference=tmp_path / "none")
    everything = trained()
    assert len(everything) > 40 and not set(everything) & done
    with pytest.raises(InputError, match="--part 'nxt'.*next, all"):
        reproduce.check_part("nxt", plans.load_plan("cpu"))


def test_alpha_only_matches_the_measured_noise_with_alpha_alone():
    """Implementation σ (1 proposal; 1/10, 1/5 detection) with α = measured/σ (geo. mean)."""
    sp = {"alpha": "1", "lam": "1/4", "sigma": {"x": "1/20", "y": "1/20", "w": "1/10", "h": "1/10"}}
    out = plans.alpha_only("implementation", {"stages": {"proposal": sp, "detection": sp}})
    assert out[0] == "params=implementation"
    got = dict(o.split("=") for o in out[1:])
    prop = (Fraction(1, 20) ** 2 * Fraction(1, 10) ** 2) ** 0.25  # σ = 1: α is the noise
    assert float(Fraction(got["params.stages.proposal.alpha"])) == pytest.approx(prop, rel=2e-3)
    # Detection: 0.05/0.1 on x, y and 0.1/0.2 on w, h: α = 1/2 on every coordinate.
    assert Fraction(got["params.stages.detection.alpha"]) == Fraction(1, 2)


def test_every_claim_is_contradicted_by_any_contradicted_comparison():
    assert overall(["supported", "contradicted"]) == "contradicted"
    mixed = overall(["supported", "no detectable difference (±1.0 points)"])
    assert mixed == "not shown: supported on 1 of 2, no detectable difference on the rest"
    half = overall(["supported", "inconclusive (interval reaches past the −1.0-point margin)"])
    assert half == "not shown: supported on 1 of 2, inconclusive on the rest"
    assert overall(["supported", "supported"]) == "supported"
    assert overall(["inconclusive (x)", "no detectable difference (±1.0 points)"]) == "inconclusive"


def test_the_exported_reference_names_no_path_of_this_machine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cwd = str(tmp_path)
    root = tmp_path / "outputs" / "reproduce" / "cpu"
    report = tmp_path / "outputs"
    (report / "figures").mkdir(parents=True)
    (report / "tables").mkdir()
    (report / "report.md").write_text(
        f"see [a](reproduce/cpu/s-s0/config.yaml) {cwd}/x\n", encoding="utf-8"
    )
    step = root / "s-s0"
    step.mkdir(parents=True)
    (step / "run.json").write_text(
        json.dumps({"cwd": cwd, "argv": [f"{cwd}/huberkl/cli.py", "detect", "--out", "o"]}),
        encoding="utf-8",
    )
    (step / "stdout.txt").write_text(
        f"hydra.searchpath=[file://{cwd}/outputs/n]\n", encoding="utf-8"
    )
    (step / ".done.json").write_text('{"key": "k"}', encoding="utf-8")
    busy = root / "u-s0"  # still training: no .done.json, so no record yet
    busy.mkdir()
    (busy / "run.json").write_text("{}", encoding="utf-8")
    # A record of an earlier part, kept because the plan still has that step.
    old = tmp_path / "ref" / "runs" / "t-s0"
    old.mkdir(parents=True)
    (old / "metrics.json").write_text("{}", encoding="utf-8")
    steps = [plans.Step("s-s0", ["detect"]), plans.Step("t-s0", ["detect"])]
    md = export_reference(report, root, tmp_path / "ref", steps)
    texts = [p.read_text(encoding="utf-8") for p in (tmp_path / "ref").rglob("*") if p.is_file()]
    assert not any(cwd in t for t in texts)
    run = json.loads((tmp_path / "ref" / "runs" / "s-s0" / "run.json").read_text(encoding="utf-8"))
    assert "cwd" not in run and run["argv"][:2] == ["huberkl", "detect"]
    assert (tmp_path / "ref" / "runs" / "t-s0" / "metrics.json").is_file()
    assert not (tmp_path / "ref" / "runs" / "u-s0").exists()
    assert "](runs/s-s0/config.yaml)" in md.read_text(encoding="utf-8")
    assert portable(f"{cwd}/a {cwd}", cwd) == "a ."


class _Runs(Runs):
    """Runs from a dict: ``{setting: {seed: AP}}`` (AP75 the same)."""

    def __init__(self, values: dict[str, dict[int, float]]) -> None:
        self.metrics = {
            s: {k: {"AP": v, "AP75": v} for k, v in d.items()} for s, d in values.items()
        }
        self.step_of = {s: {k: f"{s}-s{k}" for k in d} for s, d in values.items()}


_C = curve.Curve("faster_rcnn", "impl", ("exp",), ((0.5, 50), (1.0, 100), (2.0, 200)))


def test_convergence_check_holds_when_doubling_moves_nothing():
    flat = {
        "impl": {0: 0.600, 1: 0.610, 2: 0.605},
        "impl-x2": {0: 0.603, 1: 0.612, 2: 0.606},
        "exp": {0: 0.610, 1: 0.625, 2: 0.612},
        "exp-x2": {0: 0.612, 1: 0.626, 2: 0.615},
    }
    rows, ok = curve.check(_Runs(flat), _C)
    assert ok is True and all(r[-1] == "holds" for r in rows)
    four = curve.Curve(_C.arch, _C.reference, _C.others, _C.points, seeds=4)
    rows, ok = curve.check(_Runs(flat), four)
    assert ok is None  # 3 of its 4 seeds: not yet checked, whatever the rows say


def test_convergence_check_fails_when_the_reference_still_learns():
    moving = {
        "impl": {0: 0.60, 1: 0.61, 2: 0.605},
        "impl-x2": {0: 0.63, 1: 0.64, 2: 0.635},  # +3 points with twice the steps
        "exp": {0: 0.55, 1: 0.56, 2: 0.555},
        "exp-x2": {0: 0.635, 1: 0.645, 2: 0.64},  # the early deficit closes
    }
    rows, ok = curve.check(_Runs(moving), _C)
    assert ok is False
    assert [r[-1] for r in rows] == ["fails", "fails", "fails", "fails"]
    rows, ok = curve.check(_Runs({"impl": {0: 0.6}}), _C)
    assert ok is None  # the 2x runs are not done: not yet checked
    one = {k: {0: v[0]} for k, v in moving.items()}  # seed 0 only: a change, no interval
    rows, ok = curve.check(_Runs(one), _C)
    assert ok is None and [r[-1] for r in rows] == ["one seed: no interval"] * 4


def test_equivalence_margin_is_what_the_claims_state():
    from huberkl.report import detection as det
    from huberkl.report.judge import EQUIVALENCE_MARGIN

    assert f"{100 * EQUIVALENCE_MARGIN:g} point" in det.table5_claims()[0][0]
    iv = stats.t_interval([-0.002, -0.007, -0.004, -0.005])  # Table 5's kind of interval
    assert stats.verdict(iv, "not-worse", margin=EQUIVALENCE_MARGIN) == "supported"


PRETRAIN = [
    'scale.pretrain.synth=["data.synth.seed=1000","data.synth.noise=none"]',
    'scale.pretrain.overrides=["params=implementation","detect.iters=30"]',
]


def test_every_run_starts_from_the_one_shared_pretrained_backbone(tmp_path):
    p = plans.load_plan("cpu", overrides=PRETRAIN)
    steps = plans.build_steps(p, tmp_path)
    pre = [s for s in steps if s.name.startswith("pretrain")]
    assert [s.name for s in pre] == ["pretrain-s0", "pretrain-retinanet-s0"]
    assert pre[0].overrides[-1] == "seed=0"
    init = f"detect.model.backbone_init={tmp_path / 'pretrain-s0' / 'checkpoint.pt'}"
    assert init in pre[1].overrides  # RetinaNet's whole pretraining starts from it too
    for st in steps:
        if st.seed is not None and not st.name.startswith("retinanet-"):
            assert st.after is pre[0] and init in st.overrides, st.name


@pytest.mark.integration
def test_every_run_of_a_seed_starts_from_that_seeds_pretrained_backbone(tmp_path):
    p = plans.load_plan("cpu", overrides=[*PRETRAIN, "scale.pretrain.seed=null"])
    steps = plans.build_steps(p, tmp_path)
    names = [s.name for s in steps]
    pre = [n for n in names if n.startswith("pretrain-")]
    seeds = plans.plan_seeds(p)
    assert pre == [*(f"pretrain-s{k}" for k in seeds), *(f"pretrain-retinanet-s{k}" for k in seeds)]
    assert names.index("pretext") < names.index(pre[0]) < names.index("frcnn-publication-s0")
    by = {s.name: s for s in steps}
    for name in ("frcnn-exp-a-s2", "retinanet-exp-b-s1", "frcnn-implementation-x2-s1"):
        st = by[name]
        seed = st.seed
        init = tmp_path / f"pretrain-s{seed}" / "checkpoint.pt"
        if name.startswith(
            "retinanet-"
        ):  # from its seed's whole RetinaNet, itself from the backbone
            whole = by[f"pretrain-retinanet-s{seed}"]
            assert st.after is whole and whole.after is by[f"pretrain-s{seed}"]
            assert f"detect.model.backbone_init={init}" in whole.overrides
            continue
        assert st.after is by[f"pretrain-s{seed}"]
        assert f"detect.model.backbone_init={init}" in st.overrides
    # A new pretraining (another pretext) is another key for every run that starts from it.
    other = plans.load_plan(
        "cpu",
        overrides=[*PRETRAIN[:1], PRETRAIN[1].replace("30", "31"), "scale.pretrain.seed=null"],
    )
    again = {s.name: s for s in plans.build_steps(other, tmp_path)}
    assert again["frcnn-exp-a-s2"].key() != by["frcnn-exp-a-s2"].key()
    # Without pretraining nothing changes: no pretext, no start override.
    plain = plans.build_steps(
        plans.load_plan("cpu", overrides=["scale.pretrain.synth=[]"]), tmp_path
    )
    assert not any(s.name.startswith(("pretext", "pretrain")) for s in plain)


class _Quiet:
    def rule(self, *a):
        pass


def _batches(monkeypatch, steps: list[plans.Step]) -> list[list[str]]:
    """The batches ``reproduce.train`` would run, in order, without running them."""
    batches: list[list[str]] = []
    monkeypatch.setattr(
        reproduce,
        "_run_parallel",
        lambda todo, jobs, c: batches.append([s.name for s, _, _ in todo]),
    )
    reproduce.train([(s, Path(s.name), "k") for s in steps], 2, _Quiet())
    return batches


def test_only_the_pretraining_runs_still_needed_are_trained_first(monkeypatch):
    pre0 = plans.Step("pretrain-s0", ["detect"], part="pretrain")
    pre1 = plans.Step("pretrain-s1", ["detect"], part="pretrain")
    run = plans.Step("a-s0", ["detect"], seed=0, part="tables", after=pre0)
    # seed 1's runs are all done: its pretraining is not needed
    assert _batches(monkeypatch, [pre0, pre1, run]) == [["pretrain-s0"], ["a-s0"]]


def test_within_a_seed_the_longest_runs_start_first(monkeypatch):
    """A curve part's 2x runs start first: the short ones fill the other job meanwhile,
    instead of one 2x run training alone at the end (seeds still go in order)."""

    def run(name: str, seed: int, iters: int) -> plans.Step:
        return plans.Step(name, ["detect"], overrides=[f"detect.iters={iters}"], seed=seed)

    steps = [run("a-x0.5-s1", 1, 50), run("a-s0", 0, 100), run("a-x0.5-s0", 0, 50)]
    steps += [run("a-x2-s0", 0, 200), run("b-x2-s0", 0, 200), run("a-x2-s1", 1, 200)]
    assert _batches(monkeypatch, steps) == [
        ["a-x2-s0", "b-x2-s0", "a-s0", "a-x0.5-s0", "a-x2-s1", "a-x0.5-s1"]
    ]


def _pretrained(tmp_path: Path, name: str, model: dict) -> tuple[Path, Path]:
    """A finished pretraining step ``name`` whose checkpoint holds ``model`` (and an
    optimiser state), and a report folder to export: ``(root, report)``."""
    import torch

    root, report = tmp_path / "run", tmp_path / "report"
    (report / "figures").mkdir(parents=True)
    (report / "tables").mkdir()
    (report / "report.md").write_text("r\n", encoding="utf-8")
    pre = root / name
    pre.mkdir(parents=True)
    torch.save({"model": model, "optimizer": {"state": 1}}, pre / "checkpoint.pt")
    (pre / ".done.json").write_text('{"key": "k"}', encoding="utf-8")
    (pre / "metrics.json").write_text("{}", encoding="utf-8")
    return root, report


def test_the_shared_backbone_travels_with_the_reference(tmp_path):
    """The pretraining record keeps its backbone tensors (not the heads, not the optimiser);
    adopting it gives the runs still to train the very same start."""
    import torch

    w = torch.arange(6.0).reshape(2, 3)
    model = {"backbone.body.w": w, "roi_heads.x": torch.ones(2)}
    root, report = _pretrained(tmp_path, "pretrain-s0", model)
    export_reference(report, root, tmp_path / "ref")
    kept = torch.load(tmp_path / "ref" / "runs" / "pretrain-s0" / "backbone.pt", weights_only=True)
    assert list(kept) == ["backbone.body.w"] and torch.equal(kept["backbone.body.w"], w)
    step = plans.Step("pretrain-s0", ["detect", "train"], part="pretrain")
    out = tmp_path / "new" / "pretrain-s0"
    assert not reproduce.adopt(step, out, "other key", tmp_path / "ref")
    assert reproduce.adopt(step, out, "k", tmp_path / "ref")
    got = torch.load(out / "checkpoint.pt", weights_only=True)
    assert torch.equal(got["backbone.body.w"], w)
    # A second export from the adopted folder keeps the same tensors.
    export_reference(report, tmp_path / "new", tmp_path / "ref2")
    again = torch.load(
        tmp_path / "ref2" / "runs" / "pretrain-s0" / "backbone.pt", weights_only=True
    )
    assert torch.equal(again["backbone.body.w"], w)


def test_a_detector_pretraining_starts_that_arch_from_the_whole_detector(tmp_path):
    """``scale.pretrain.detectors``: RetinaNet pretrained on the pretext set from the shared
    backbone; RetinaNet runs start from it whole, Faster R-CNN runs from the backbone."""
    extra = '++scale.pretrain.detectors={retinanet: ["params=implementation","detect.iters=20"]}'
    p = plans.load_plan("cpu", overrides=[*PRETRAIN, extra])
    steps = plans.build_steps(p, tmp_path)
    by = {s.name: s for s in steps}
    whole = by["pretrain-retinanet-s0"]
    assert whole.after is by["pretrain-s0"] and whole.part == "pretrain"
    start = tmp_path / "pretrain-s0" / "checkpoint.pt"
    assert f"detect.model.backbone_init={start}" in whole.overrides
    assert whole.overrides[0] == "detect=protocol-retinanet"
    names = [s.name for s in steps]
    assert names.index("pretrain-s0") < names.index("pretrain-retinanet-s0")
    weights = f"detect.model.weights={tmp_path / 'pretrain-retinanet-s0' / 'checkpoint.pt'}"
    for name in ("retinanet-exp-b-s1", "retinanet-implementation-x2-s2"):
        assert by[name].after is whole and weights in by[name].overrides, name
        assert not any("backbone_init" in o for o in by[name].overrides)
    assert by["frcnn-exp-a-s3"].after is by["pretrain-s0"]
    # Another detector pretraining is another key for the RetinaNet runs only.
    other = plans.load_plan("cpu", overrides=[*PRETRAIN, extra.replace("=20", "=21")])
    again = {s.name: s for s in plans.build_steps(other, tmp_path)}
    assert again["retinanet-exp-b-s1"].key() != by["retinanet-exp-b-s1"].key()
    assert again["frcnn-exp-b-s1"].key() == by["frcnn-exp-b-s1"].key()
    with pytest.raises(InputError, match="scale.pretrain.detectors"):
        plans.load_plan("cpu", overrides=[*PRETRAIN, "++scale.pretrain.detectors={ssd: []}"])


def test_detector_pretraining_waits_for_the_backbone_it_starts_from(monkeypatch):
    pre = plans.Step("pretrain-s0", ["detect"], part="pretrain")
    whole = plans.Step("pretrain-retinanet-s0", ["detect"], part="pretrain", after=pre)
    a = plans.Step("retinanet-a-s0", ["detect"], seed=0, part="retinanet", after=whole)
    b = plans.Step("frcnn-a-s0", ["detect"], seed=0, part="tables", after=pre)
    want = [["pretrain-s0"], ["pretrain-retinanet-s0"], ["retinanet-a-s0", "frcnn-a-s0"]]
    assert _batches(monkeypatch, [pre, whole, a, b]) == want


def test_the_pretrained_detector_travels_whole_with_the_reference(tmp_path):
    import torch

    model = {"backbone.body.w": torch.ones(2), "head.classification_head.w": torch.zeros(3)}
    root, report = _pretrained(tmp_path, "pretrain-retinanet-s0", model)
    export_reference(report, root, tmp_path / "ref")
    kept = tmp_path / "ref" / "runs" / "pretrain-retinanet-s0"
    assert not (kept / "backbone.pt").exists()
    state = torch.load(kept / "detector.pt", weights_only=True)
    assert sorted(state) == sorted(model)  # the heads too, without the optimiser
    step = plans.Step("pretrain-retinanet-s0", ["detect", "train"], part="pretrain")
    out = tmp_path / "new" / "pretrain-retinanet-s0"
    assert reproduce.adopt(step, out, "k", tmp_path / "ref")
    got = torch.load(out / "checkpoint.pt", weights_only=True)
    assert torch.equal(got["head.classification_head.w"], torch.zeros(3))


class _FakeProcess:
    """Stands in for a training subprocess: records its command line and succeeds."""

    calls: list[list[str]] = []

    def __init__(self, cmd, **kwargs):
        _FakeProcess.calls.append(cmd)
        self.stdout = iter(["trained\n"])
        self.returncode = 0

    def wait(self) -> int:
        return 0


@pytest.mark.parametrize(
    ("files", "key", "resumes", "kept"),
    [
        ({"losses.csv": "it\n", "checkpoint.pt": "x"}, "k", True, True),
        # Stopped before its first checkpoint: nothing to resume, so it starts again.
        ({"losses.csv": "it\n"}, "k", False, False),
        # Begun with another config: redone from scratch.
        ({"losses.csv": "it\n", "checkpoint.pt": "x"}, "other", False, False),
    ],
)
def test_an_interrupted_run_resumes_only_from_a_checkpoint(
    tmp_path, monkeypatch, files, key, resumes, kept
):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".key").write_text(key, encoding="utf-8")
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
    _FakeProcess.calls = []
    monkeypatch.setattr(reproduce.subprocess, "Popen", _FakeProcess)
    step = plans.Step("run", ["detect", "train"], overrides=["seed=0"], resumable=True)
    reproduce.run_step(step, out, "k", lambda _: None, echo=False)
    (cmd,) = _FakeProcess.calls
    assert ("detect.resume=true" in cmd) is resumes
    assert (out / "losses.csv").is_file() is kept
    assert json.loads((out / ".done.json").read_text(encoding="utf-8"))["key"] == "k"
