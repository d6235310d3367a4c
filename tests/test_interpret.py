"""`huberkl interpret`: Table 2 exactly, the mapping both ways, fragments and the CLI."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import subprocess
import sys
from fractions import Fraction as F
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from huberkl import interpret as lib
from huberkl.cli import app
from huberkl.errors import InputError
from huberkl.params import COORDS, StageParams, load_preset

# Table 2 of the paper, copied cell by cell from its text (rows x*, y*, w*, h*, x̃, ỹ, w̃, h̃).
# Publication is read in the publication's form λ·H_α, the others as (λ/α)·H_α.
TABLE2 = {
    ("publication", "proposal"): "wa ha wa ha wa/10 ha/10 wa/10 ha/10",
    ("publication", "detection"): "wa ha wa ha wa/10 ha/10 wa/10 ha/10",
    ("implementation", "proposal"): "wa/9 ha/9 wa/9 ha/9 wa ha wa ha",
    ("implementation", "detection"): "wa/10 ha/10 wa/5 ha/5 wa/10 ha/10 wa/5 ha/5",
    ("exp-a", "proposal"): "wa/20 ha/20 wa/10 ha/10 wa/5 ha/5 2wa/5 2ha/5",
    ("exp-a", "detection"): "wa/20 ha/20 wa/10 ha/10 wa/10 ha/10 wa/5 ha/5",
    ("exp-b", "proposal"): "wa/20 ha/20 wa/10 ha/10 wa/10 ha/10 wa/5 ha/5",
    ("exp-b", "detection"): "wa/20 ha/20 wa/10 ha/10 wa/20 ha/20 wa/10 ha/10",
    ("exp-c", "proposal"): "wa/20 ha/20 wa/10 ha/10 wa/5 ha/5 2wa/5 2ha/5",
    ("exp-c", "detection"): "wa/20 ha/20 wa/10 ha/10 wa/20 ha/20 wa/10 ha/10",
}


def _paper_value(cell: str) -> F:
    """'2wa/5' -> 2/5, written here independently of the library's parser."""
    m = re.fullmatch(r"(\d*)[wh]a(?:/(\d+))?", cell)
    assert m, cell
    return F(int(m[1] or 1), int(m[2] or 1))


def _cells(preset: str, stage: str) -> list[str]:
    (reading,) = [r for r in lib.read_preset(load_preset(preset)) if r.stage == stage]
    s = reading.scales
    return [lib.scale_text(s.label[c], c) for c in COORDS] + [
        lib.scale_text(s.prediction[c], c) for c in COORDS
    ]


# --------------------------------------------------------------------------- Table 2


def test_table2_every_cell_text_and_value() -> None:
    for (preset, stage), row in TABLE2.items():
        expected = row.split()
        assert _cells(preset, stage) == expected, (preset, stage)
        (reading,) = [r for r in lib.read_preset(load_preset(preset)) if r.stage == stage]
        values = [reading.scales.label[c] for c in COORDS]
        values += [reading.scales.prediction[c] for c in COORDS]
        assert values == [_paper_value(c) for c in expected], (preset, stage)


def test_table2_through_the_cli_json() -> None:
    out = CliRunner().invoke(app, ["interpret", "--preset", "all", "--format", "json"])
    assert out.exit_code == 0, out.output
    objs = {o["preset"]: o for o in json.loads(out.stdout)}
    for (preset, stage), row in TABLE2.items():
        (st_,) = [s for s in objs[preset]["stages"] if s["stage"] == stage]
        got = [st_["label_noise_text"][c] for c in COORDS]
        got += [st_["prediction_noise_text"][c] for c in COORDS]
        assert got == row.split()
        floats = [st_["label_noise"][c] for c in COORDS] + [
            st_["prediction_noise"][c] for c in COORDS
        ]
        assert floats == [float(_paper_value(c)) for c in row.split()]


def test_publication_in_the_implementation_form_differs() -> None:
    """The form matters: (λ/α)·H_α with λ = 10 would claim prediction noise w_a/10 too, but
    only because α = 1; with α = 1/2 the two forms disagree by the factor α."""
    stage = StageParams(alpha=F(1, 2), lam=F(10))
    assert lib.noise_scales(stage, "smooth-l1").prediction["x"] == F(1, 10)
    assert lib.noise_scales(stage, "huber").prediction["x"] == F(1, 5)
    assert lib.noise_scales(stage, "huber").label["x"] == F(1, 2)


# --------------------------------------------------------------------------- forward mapping


def test_forward_formulas_each_loss_and_form() -> None:
    sigma = {"x": F(1, 10), "y": F(1, 20), "w": F(1, 5), "h": F(1, 3)}
    s = StageParams(alpha=F(1, 9), lam=F(3, 2), sigma=sigma)
    a = lib.noise_scales(s, "smooth-l1")
    b = lib.noise_scales(s, "huber")
    for c in COORDS:
        assert a.label[c] == b.label[c] == F(1, 9) * sigma[c]  # α·σ·w_a
        assert a.prediction[c] == sigma[c] / F(3, 2)  # σ·w_a/λ
        assert b.prediction[c] == sigma[c] / (F(1, 9) * F(3, 2))  # σ·w_a/(αλ)
    l1 = StageParams(loss="l1", alpha=F(0), lam=F(2), sigma=sigma)
    for form in ("smooth-l1", "huber"):
        r = lib.noise_scales(l1, form)
        assert all(r.label[c] == 0 and r.prediction[c] == sigma[c] / 2 for c in COORDS)
    kl = StageParams(loss="kl", alpha=F(1, 2), lam=F(1), sigma=sigma)
    r = lib.noise_scales(kl, "smooth-l1")  # D_{α/2,1/α} in place of H_α (Appendix E)
    assert all(r.label[c] == sigma[c] / 4 and r.prediction[c] == sigma[c] for c in COORDS)


def test_framework_presets_read_as_expected() -> None:
    tv = {r.stage: r for r in lib.read_preset(load_preset("torchvision-frcnn"))}
    assert lib.scale_text(tv["detection"].scales.label["x"], "x") == "wa/90"  # 1/9 · 1/10
    assert lib.scale_text(tv["detection"].scales.label["h"], "h") == "ha/45"
    for name in ("detectron2-frcnn", "mmdet-frcnn", "torchvision-retinanet"):
        for r in lib.read_preset(load_preset(name)):
            assert all(r.scales.label[c] == 0 for c in COORDS), name  # L1 = the α -> 0 limit
    (rn,) = lib.read_preset(load_preset("detectron-retinanet"))
    assert rn.one_stage and lib.scale_text(rn.scales.label["x"], "x") == "11wa/100"


# --------------------------------------------------------------------------- notation and parsing


@pytest.mark.parametrize(
    ("value", "coord", "text"),
    [
        (F(1, 9), "x", "wa/9"),
        (F(2, 5), "w", "2wa/5"),
        (F(1, 20), "y", "ha/20"),
        (F(1), "h", "ha"),
        (F(3), "x", "3wa"),
        (F(0), "y", "0"),
    ],
)
def test_scale_text(value: F, coord: str, text: str) -> None:
    assert lib.scale_text(value, coord) == text
    assert lib.parse_scale(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1/20", F(1, 20)),
        ("0.05", F(1, 20)),
        ("wa/20", F(1, 20)),
        ("2wa/5", F(2, 5)),
        ("w_a", F(1)),
    ],
)
def test_parse_scale(text: str, value: F) -> None:
    assert lib.parse_scale(text) == value


def test_parse_coords_forms() -> None:
    one = lib.parse_coords("1/9", "sigma")
    assert one == {c: F(1, 9) for c in COORDS}
    four = lib.parse_coords("1/10,1/10,1/5,1/5", "sigma")
    assert four == {"x": F(1, 10), "y": F(1, 10), "w": F(1, 5), "h": F(1, 5)}
    some = lib.parse_coords("x=1/10,w=0.2", "sigma", default=F(1))
    assert some == {"x": F(1, 10), "y": F(1), "w": F(1, 5), "h": F(1)}
    with pytest.raises(InputError, match="unknown coordinate 'z'"):
        lib.parse_coords("z=1", "sigma")
    with pytest.raises(InputError, match="1 or 4"):
        lib.parse_coords("1,2", "sigma")


# --------------------------------------------------------------------------- inverse


def test_inverse_examples() -> None:
    s = lib.settings_for("1/20", "1/10")
    assert (s.loss, s.alpha, s.lam) == ("huber", 1, F(1, 2))
    assert s.sigma == {c: F(1, 20) for c in COORDS}
    # Experiment A's proposal stage back from its Table 2 column.
    a = lib.settings_for("wa/20,ha/20,wa/10,ha/10", "wa/5,ha/5,2wa/5,2ha/5")
    assert a == load_preset("exp-a").stage("proposal")
    # The publication's column, in its own form, with α = 1.
    p = lib.settings_for("1", "1/10", form="huber")
    assert (p.alpha, p.lam, p.sigma["x"]) == (1, 10, 1)
    # α given: only σ and λ change.
    b = lib.settings_for("1/20", "1/10", alpha="1/2")
    assert (b.alpha, b.lam, b.sigma["x"]) == (F(1, 2), F(1), F(1, 10))
    # Label noise 0: an L1 loss.
    z = lib.settings_for("0", "1/10")
    assert (z.loss, z.alpha) == ("l1", 0) and lib.noise_scales(z).prediction["x"] == F(1, 10)


def test_inverse_rejects_unreachable_scales() -> None:
    with pytest.raises(InputError, match="ratio must be the same"):
        lib.settings_for("1/20", "x=1/10,y=1/10,w=1/10,h=1/5")
    with pytest.raises(InputError, match="for every coordinate .* or for none"):
        lib.settings_for("0,1,1,1", "1")
    with pytest.raises(InputError, match="alpha 0"):
        lib.settings_for("0", "1", alpha="1")
    with pytest.raises(InputError, match="prediction noise x must be > 0"):
        lib.settings_for("1", "0")


positive = st.fractions(min_value=F(1, 1000), max_value=F(1000), max_denominator=10_000)


@settings(max_examples=200, deadline=None)
@given(
    label=st.lists(positive, min_size=4, max_size=4),
    ratio=positive,
    alpha=st.none() | positive,
    form=st.sampled_from(["smooth-l1", "huber"]),
    loss=st.sampled_from(["huber", "kl"]),
)
def test_round_trip_noise_to_settings_to_noise(label, ratio, alpha, form, loss) -> None:
    lab = dict(zip(COORDS, label, strict=True))
    pred = {c: lab[c] / ratio for c in COORDS}
    params = lib.settings_for(lab, pred, alpha=alpha, form=form, loss=loss)
    back = lib.noise_scales(params, form)
    assert back.label == lab and back.prediction == pred
    assert params.alpha == (1 if alpha is None else alpha)


@settings(max_examples=200, deadline=None)
@given(
    alpha=positive,
    lam=positive,
    sigma=st.lists(positive, min_size=4, max_size=4),
    form=st.sampled_from(["smooth-l1", "huber"]),
    loss=st.sampled_from(["huber", "kl"]),
)
def test_round_trip_settings_to_noise_to_settings(alpha, lam, sigma, form, loss) -> None:
    params = StageParams(
        loss=loss, alpha=alpha, lam=lam, sigma=dict(zip(COORDS, sigma, strict=True))
    )
    s = lib.noise_scales(params, form)
    assert lib.settings_for(s.label, s.prediction, alpha=alpha, form=form, loss=loss) == params


@settings(max_examples=50, deadline=None)
@given(pred=st.lists(positive, min_size=4, max_size=4))
def test_round_trip_l1(pred) -> None:
    p = dict(zip(COORDS, pred, strict=True))
    back = lib.noise_scales(lib.settings_for("0", p))
    assert back.prediction == p and all(v == 0 for v in back.label.values())


# --------------------------------------------------------------------------- fragments


def _mmdet(text: str) -> dict:
    scope: dict = {}
    exec(text, {}, scope)  # our own generated config text: plain dict literals
    return scope["model"]


def test_fragments_implementation_detection_match_stock_defaults() -> None:
    stage = load_preset("implementation").stage("detection")
    fr = lib.fragments(stage, "smooth-l1", "roi")
    assert "BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))" in fr["torchvision"]
    assert "beta=1.0" in fr["torchvision"]
    d2 = yaml.safe_load(fr["detectron2"])["MODEL"]["ROI_BOX_HEAD"]
    assert d2["BBOX_REG_WEIGHTS"] == [10.0, 10.0, 5.0, 5.0]
    assert (d2["SMOOTH_L1_BETA"], d2["BBOX_REG_LOSS_WEIGHT"]) == (1.0, 1.0)
    head = _mmdet(fr["mmdetection"])["roi_head"]["bbox_head"]
    assert head["bbox_coder"]["target_stds"] == [0.1, 0.1, 0.2, 0.2]
    assert head["loss_bbox"] == {"type": "SmoothL1Loss", "beta": 1.0, "loss_weight": 1.0}


def test_fragments_l1_and_retinanet() -> None:
    (rn,) = lib.read_preset(load_preset("torchvision-retinanet"))
    fr = lib.fragments(rn.params, rn.form, lib.head_of(rn))
    assert "_loss_type = 'l1'" in fr["torchvision"]
    assert "model.box_coder = BoxCoder" in fr["torchvision"]  # both coder objects are set
    assert yaml.safe_load(fr["detectron2"])["MODEL"]["RETINANET"]["SMOOTH_L1_LOSS_BETA"] == 0.0
    assert _mmdet(fr["mmdetection"])["bbox_head"]["loss_bbox"] == {
        "type": "L1Loss",
        "loss_weight": 1.0,
    }


def test_fragment_weight_in_publication_form_is_lambda_alpha() -> None:
    stage = StageParams(alpha=F(1, 2), lam=F(10))
    rpn = _mmdet(lib.fragments(stage, "huber", "rpn")["mmdetection"])["rpn_head"]
    assert rpn["loss_bbox"]["loss_weight"] == 5.0  # λ·H_α = λ·α·smooth_l1(beta=α)


@settings(max_examples=100, deadline=None)
@given(
    alpha=positive,
    lam=positive,
    sigma=st.lists(positive, min_size=4, max_size=4),
    head=st.sampled_from(lib.HEADS),
)
def test_fragments_carry_the_settings(alpha, lam, sigma, head) -> None:
    params = StageParams(alpha=alpha, lam=lam, sigma=dict(zip(COORDS, sigma, strict=True)))
    fr = lib.fragments(params, "smooth-l1", head)
    model = _mmdet(fr["mmdetection"])
    part = {"rpn": lambda m: m["rpn_head"], "roi": lambda m: m["roi_head"]["bbox_head"]}
    h = part.get(head, lambda m: m["bbox_head"])(model)
    assert h["loss_bbox"]["beta"] == pytest.approx(float(alpha), rel=1e-15)
    assert h["loss_bbox"]["loss_weight"] == pytest.approx(float(lam), rel=1e-15)
    assert h["bbox_coder"]["target_stds"] == pytest.approx([float(s) for s in sigma], rel=1e-15)
    section = {"rpn": "RPN", "roi": "ROI_BOX_HEAD", "retinanet": "RETINANET"}[head]
    d2 = yaml.safe_load(fr["detectron2"])["MODEL"][section]
    assert d2["BBOX_REG_WEIGHTS"] == pytest.approx([float(1 / s) for s in sigma], rel=1e-15)


# --------------------------------------------------------------------------- CLI (in process)


def _run(*args: str):
    result = CliRunner().invoke(app, ["interpret", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_forward_table() -> None:
    out = _run("--alpha", "1/9", "--sigma", "1")
    assert "wa/9" in out and "0.1111" in out
    out = _run("--preset", "exp-a")
    assert "2wa/5" in out and "2ha/5" in out


def test_cli_all_table_and_markdown() -> None:
    out = _run("--preset", "all")
    for name in ("publication", "exp-c", "torchvision-frcnn", "detectron-retinanet"):
        assert name in out
    md = _run("--preset", "all", "--format", "markdown")
    row = next(line for line in md.splitlines() if line.startswith("| w̃ |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:11]
    assert cells == [TABLE2[k].split()[6] for k in TABLE2]


def test_cli_json_schema() -> None:
    obj = json.loads(_run("--preset", "exp-b", "--format", "json"))
    assert obj["preset"] == "exp-b" and [s["stage"] for s in obj["stages"]] == [
        "proposal",
        "detection",
    ]
    stage = obj["stages"][0]
    for key in ("stage", "lambda", "alpha", "sigma", "label_noise", "prediction_noise"):
        assert key in stage
    assert stage["lambda"] == 0.5 and stage["alpha"] == 1.0
    assert stage["sigma"] == {"x": 0.05, "y": 0.05, "w": 0.1, "h": 0.1}
    assert stage["prediction_noise_text"] == {"x": "wa/10", "y": "ha/10", "w": "wa/5", "h": "ha/5"}
    custom = json.loads(_run("--alpha", "1/9", "--format", "json"))
    assert custom["preset"] is None


def test_cli_csv() -> None:
    rows = list(csv.DictReader(io.StringIO(_run("--preset", "exp-a", "--format", "csv"))))
    assert len(rows) == 8
    w = next(r for r in rows if r["stage"] == "proposal" and r["coordinate"] == "w")
    assert (w["prediction_noise"], w["prediction_noise_text"]) == ("2/5", "2wa/5")


def test_cli_inverse_prints_settings_and_fragments() -> None:
    out = _run("--label-noise", "1/20", "--pred-noise", "1/10")
    assert "λ = 1/2" in out and "α = 1" in out
    assert "BoxCoder(weights=(20.0, 20.0, 20.0, 20.0))" in out
    assert "BBOX_REG_LOSS_WEIGHT: 0.5" in out and "target_stds=[0.05, 0.05, 0.05, 0.05]" in out
    obj = json.loads(
        _run("--label-noise", "1/20", "--label-noise-w", "1/10", "--label-noise-h", "1/10",
             "--pred-noise", "1/5", "--pred-noise-w", "2/5", "--pred-noise-h", "2/5",
             "--format", "json")
    )  # fmt: skip
    stage = obj["stages"][0]
    assert stage["exact"] == {
        "lambda": "1/4",
        "alpha": "1",
        "sigma": {"x": "1/20", "y": "1/20", "w": "1/10", "h": "1/10"},
    }
    assert set(stage["config"]) == {"torchvision", "detectron2", "mmdetection"}


def test_cli_hydra_overrides_and_default_preset() -> None:
    from huberkl import config

    assert config.compose([]).params.name == config.default_choice("params")
    obj = json.loads(_run("--preset", "exp-a", "params.stages.detection.lam=1", "--format", "json"))
    assert obj["stages"][1]["prediction_noise_text"]["x"] == "wa/20"  # as Experiment B/C
    assert "name: exp-b" in _run("--preset", "exp-b", "--cfg")


# --------------------------------------------------------------------------- CLI (real entry point)


BAD = [
    (["--alpha", "-1"], "alpha"),
    (["--lam", "0"], "lam"),
    (["--sigma", "0"], "sigma_x"),
    (["--sigma-h", "-1/5"], "sigma_h"),
    (["--sigma-x", "1e400"], "sigma_x"),  # exact as a Fraction, but not a float64
    (["--alpha", "1e400"], "alpha"),
    (["--alpha", "1/0"], "1/0"),
    (["--lam", "abc"], "abc"),
    (["--preset", "nope"], "nope"),
    (["--sigma", "z=1"], "'z'"),
    (["--label-noise", "q=1", "--pred-noise", "1"], "'q'"),
    (["--label-noise", "1/20"], "prediction noise"),
    (["--format", "xml"], "xml"),
    (["--preset", "exp-a", "params.stages.detection.lam=0"], "lam"),
]


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_one_line_exit_2(args: list[str], named: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from huberkl.cli import main; main()", "interpret", *args],
        capture_output=True,
        text=True,
        timeout=60,
        encoding="utf-8",
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_preset_all_loads_no_heavy_modules() -> None:
    code = (
        "import sys; from huberkl.cli import app\n"
        "app(['interpret', '--preset', 'all'], standalone_mode=False)\n"
        "heavy = [m for m in ('torch', 'matplotlib', 'pandas', 'hydra', 'omegaconf', 'scipy') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, encoding="utf-8"
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout[-300:]


def test_cli_preset_fragments_pick_the_head_per_stage() -> None:
    out = _run("--preset", "implementation", "--fragments")
    assert "model.rpn.box_coder = BoxCoder(weights=(1.0, 1.0, 1.0, 1.0))" in out
    assert "beta=1 / 9" in out  # the RPN's α = 1/9, exact in Python
    assert "ROI_BOX_HEAD" in out and "target_stds=[0.1, 0.1, 0.2, 0.2]" in out
    md = _run("--preset", "torchvision-retinanet", "--fragments", "--format", "markdown")
    assert "```yaml" in md and "RETINANET" in md and "| x | 1 | 0 | 0 | wa | 1 |" in md


def test_markdown_stage_table_bytes() -> None:
    """The per-stage Markdown table, byte for byte (σ, the scales in the paper's notation
    and their decimals: label α·σ = σ/9, prediction σ/λ = σ/2)."""
    params = StageParams(
        alpha=F(1, 9), lam=F(2), sigma={"x": F(1, 10), "y": F(1, 10), "w": F(1, 5), "h": F(1, 5)}
    )
    md = lib.render_markdown([(None, [lib.read_stage(params)])])
    assert md == (
        "**custom settings: λ = 2, α = 1/9 (huber, (λ/α)·H_α)**\n"
        "\n"
        "| coordinate | σ | label noise | ≈ | prediction noise | ≈ |\n"
        "|---|---|---|---|---|---|\n"
        "| x | 1/10 | wa/90 | 0.01111 | wa/20 | 0.05 |\n"
        "| y | 1/10 | ha/90 | 0.01111 | ha/20 | 0.05 |\n"
        "| w | 1/5 | wa/45 | 0.02222 | wa/10 | 0.1 |\n"
        "| h | 1/5 | ha/45 | 0.02222 | ha/10 | 0.1 |\n"
    )


def test_markdown_presets_side_by_side_layout() -> None:
    """Several presets: a Table 1 block and a Table 2 block, one blank line between parts."""
    groups = [(n, lib.read_preset(load_preset(n))) for n in ("exp-a", "exp-b")]
    md = lib.render_markdown(groups)
    blocks = md.split("\n\n")
    assert blocks[0] == "**Settings (Table 1)**" and blocks[2] == "**Noise scales (Table 2)**"
    assert md.endswith(" |\n") and "\n\n\n" not in md
    assert len(blocks[1].splitlines()) == 2 + 8 and len(blocks[3].splitlines()) == 2 + 8


def _imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_interpret_modules_import_only_lower_ones_and_stay_small() -> None:
    """scales < readings < fragments < render: each imports only those before it, none
    imports torch, and no function is longer than 100 lines."""
    order = ["scales", "readings", "fragments", "render"]
    root = Path(lib.__file__).parent
    for i, name in enumerate(order):
        path = root / f"{name}.py"
        inside = {m.rsplit(".", 1)[1] for m in _imports_of(path) if m.startswith("huberkl.interp")}
        assert inside <= set(order[:i]), (name, inside)
        assert not any(m.split(".")[0] == "torch" for m in _imports_of(path)), name
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                assert node.end_lineno - node.lineno < 100, (name, node.name)
