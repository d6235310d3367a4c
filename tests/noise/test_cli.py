"""`huberkl noise` end to end: synthetic sets with known noise, outputs, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from huberkl.detect.data import synth
from huberkl.noise import validate
from tests.helpers.cli import run as _main


@pytest.fixture(scope="module")
def pair(tmp_path_factory) -> dict[str, Path]:
    """A clean annotation file and two noisy copies (Laplace 0.05 in the target coding)."""
    root = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    xywh, image, cat = validate.clean_boxes(1200, rng)
    images = [{"id": int(i)} for i in np.unique(image)]

    def write(name: str, boxes: np.ndarray) -> Path:
        anns = [
            {"id": i + 1, "image_id": int(image[i]), "category_id": int(cat[i]) + 1,
             "bbox": [float(v) for v in boxes[i]], "iscrowd": 0}
            for i in range(len(boxes))
        ]  # fmt: skip
        path = root / f"{name}.json"
        path.write_text(json.dumps({"images": images, "annotations": anns}), encoding="utf-8")
        return path

    out = {"clean": write("clean", xywh)}
    for k in (1, 2):
        out[f"noisy{k}"] = write(
            f"noisy{k}", synth.perturb_targets(xywh, "laplace", (0.05,) * 4, rng)[0]
        )
    out["root"] = root
    return out


def test_gold_json_schema_and_recovered_scale(pair, monkeypatch, capsys, tmp_path):
    code, out, err = _main(
        monkeypatch, capsys, "noise", str(pair["noisy1"]), "--reference", str(pair["clean"]),
        "--format", "json", "--out", str(tmp_path), "--resamples", "50",
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    # IoU < 0.5 drops the few pairs in the tails; each drop leaves one box unmatched per side
    assert 1170 <= res["matched"] < 1200 and res["unmatched"] == 2 * (1200 - res["matched"])
    for c in "xywh":
        info = res["coordinates"][c]
        assert set(info["fits"]) == {"laplace", "gaussian", "logistic", "cauchy"}
        assert info["family"] == "laplace"
        assert info["scale"] == pytest.approx(0.05, rel=0.1)
        assert info["ci95"][0] < info["scale"] < info["ci95"][1]
    s = res["settings"]
    assert s["preset"] == "exp-c" and len(s["paper"]) == 2 and len(s["efficient"]) == 2
    assert all(r["settings"]["loss"] == "l1" for r in s["efficient"])  # Laplace -> L1
    for name in (
        "result.json",
        "errors.csv",
        "errors.png",
        "fragments.md",
        "config.yaml",
        "run.json",
    ):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "errors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_written_preset_loads_for_detect(pair, monkeypatch, capsys, tmp_path):
    from huberkl import config
    from huberkl.params import Preset

    code, _, err = _main(
        monkeypatch, capsys, "noise", str(pair["noisy1"]), "-r", str(pair["clean"]),
        "--out", str(tmp_path), "--name", "mynoise", "--resamples", "0", "--no-figure",
    )  # fmt: skip
    assert code == 0, err
    path = tmp_path / "params" / "mynoise.yaml"
    assert f"hydra.searchpath=[file://{tmp_path.resolve()}]" in path.read_text(encoding="utf-8")
    cfg = config.compose([f"hydra.searchpath=[file://{tmp_path.resolve()}]", "params=mynoise"])
    from omegaconf import OmegaConf

    preset = Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))
    direct = Preset.from_mapping(yaml.safe_load(path.read_text(encoding="utf-8")))
    assert preset == direct and preset.name == "mynoise"
    assert (tmp_path / "params" / "mynoise-efficient.yaml").is_file()  # Laplace: an L1 preset


def test_peer_mode_reports_the_per_annotation_scale(pair, monkeypatch, capsys, tmp_path):
    code, out, err = _main(
        monkeypatch, capsys, "noise", str(pair["noisy1"]), "-r", str(pair["noisy2"]),
        "--reference-kind", "peer", "--format", "json", "--out", str(tmp_path), "--resamples", "0",
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    for c in "xywh":
        fit = res["coordinates"][c]["fits"]["laplace"]
        assert fit["scale"] == pytest.approx(0.05, rel=0.15)


def test_table_and_csv_formats(pair, monkeypatch, capsys, tmp_path):
    code, out, err = _main(
        monkeypatch, capsys, "noise", str(pair["noisy1"]), "-r", str(pair["clean"]),
        "--out", str(tmp_path), "--resamples", "0", "--no-figure",
    )  # fmt: skip
    assert code == 0, err
    assert "Label noise per coordinate" in out and "Settings read off" in out
    code, out, _ = _main(
        monkeypatch, capsys, "noise", str(pair["noisy1"]), "-r", str(pair["clean"]),
        "--out", str(tmp_path / "c"), "--resamples", "0", "--format", "csv", "--no-figure",
    )  # fmt: skip
    lines = out.strip().splitlines()
    assert lines[0].startswith("coordinate,family,scale") and len(lines) == 1 + 16


def test_few_matches_warn_but_answer(tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(1)
    xywh, image, cat = validate.clean_boxes(40, rng)
    noisy = synth.perturb_targets(xywh, "gaussian", (0.03,) * 4, rng)[0]
    files = []
    for name, boxes in (("a", noisy), ("b", xywh)):
        anns = [
            {"id": i, "image_id": int(image[i]), "category_id": int(cat[i]), "bbox": list(map(float, boxes[i]))}
            for i in range(40)
        ]  # fmt: skip
        p = tmp_path / f"{name}.json"
        p.write_text(json.dumps({"annotations": anns}), encoding="utf-8")
        files.append(str(p))
    code, out, err = _main(
        monkeypatch, capsys, "noise", files[0], "-r", files[1], "--format", "json",
        "--out", str(tmp_path / "o"), "--resamples", "40",
    )  # fmt: skip
    assert code == 0
    assert "warning: only 40 matched errors" in err
    ci = json.loads(out)["coordinates"]["x"]["ci95"]
    assert ci[1] - ci[0] > 0.2 * json.loads(out)["coordinates"]["x"]["scale"]


def test_iou_agreement_and_residuals(monkeypatch, capsys, tmp_path):
    code, out, err = _main(
        monkeypatch, capsys, "noise", "--iou-agreement", "0.8", "--family", "logistic",
        "--format", "json", "--out", str(tmp_path / "i"),
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    assert (
        res["coordinates"]["x"]["family"] == "logistic"
        and 0 < res["coordinates"]["x"]["scale"] < 0.1
    )
    r = np.random.default_rng(2).logistic(0, 0.3, 3000)
    csv = tmp_path / "res.csv"
    csv.write_text("r,other\n" + "\n".join(f"{v},1" for v in r) + "\n", encoding="utf-8")
    code, out, err = _main(
        monkeypatch, capsys, "noise", "--residuals", str(csv), "--format", "json",
        "--out", str(tmp_path / "r"), "--resamples", "50",
    )  # fmt: skip
    assert code == 0, err
    res = json.loads(out)
    assert res["coordinates"]["r"]["family"] == "logistic"
    assert res["coordinates"]["r"]["scale"] == pytest.approx(0.3, rel=0.08)
    from huberkl.toy.theory import optimal_alpha

    assert res["settings"]["efficient_alpha"] == pytest.approx(
        optimal_alpha("logistic", res["coordinates"]["r"]["scale"]), rel=1e-9
    )


def _coco_file(path: Path, boxes, images=None) -> str:
    anns = [
        {"id": i + 1, "image_id": im, "category_id": 1, "bbox": b}
        for i, (im, b) in enumerate(boxes)
    ]
    data = {"annotations": anns}
    if images is not None:
        data["images"] = [{"id": i} for i in images]
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("given", ["1/20", "wa/20,ha/20,wa/10,ha/10"])
def test_pred_noise_sets_every_stage_s_prediction_noise(given, monkeypatch, capsys, tmp_path):
    code, out, err = _main(
        monkeypatch, capsys, "noise", "--iou-agreement", "0.85", "--pred-noise", given,
        "--format", "json", "--out", str(tmp_path / "p"),
    )  # fmt: skip
    assert code == 0, err
    want = {"x": 0.05, "y": 0.05, "w": 0.05, "h": 0.05} if "," not in given else {
        "x": 0.05, "y": 0.05, "w": 0.1, "h": 0.1}  # fmt: skip
    for stage in json.loads(out)["settings"]["paper"]:
        assert stage["prediction_noise"] == want
        # λ is shared: only noise proportional to the (here equal) label noise gives settings
        assert (stage["settings"] is None) == ("," in given), stage["note"]


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("no_common", "no image id in common"),
        ("no_match", "no boxes of"),
        ("zero_size", "zero-size"),
        ("bad_iou", "--iou-agreement must be in (0, 1]"),
        ("bad_min_iou", "--min-iou must be in (0, 1]"),
        ("nan_residuals", "NaN"),
        ("two_ways", "give exactly one of"),
        ("missing_file", "does not exist"),
        ("negative_pred_noise", "noise.pred_noise='-1': --pred-noise must be one scale > 0"),
        ("zero_pred_noise", "noise.pred_noise='0': --pred-noise must be one scale > 0"),
        ("partial_pred_noise", "noise.pred_noise='x=1/10'"),
    ],
)
def test_bad_input_is_one_line_exit_2(case, needle, tmp_path, monkeypatch, capsys):
    a = _coco_file(tmp_path / "a.json", [(1, [0, 0, 10, 10])])
    args = {
        "no_common": [a, "-r", _coco_file(tmp_path / "b1.json", [(2, [0, 0, 10, 10])])],
        "no_match": [a, "-r", _coco_file(tmp_path / "b2.json", [(1, [50, 50, 10, 10])])],
        "zero_size": [a, "-r", _coco_file(tmp_path / "b3.json", [(1, [0, 0, 10, 0])])],
        "bad_iou": ["--iou-agreement", "1.5"],
        "bad_min_iou": [a, "-r", a, "--min-iou", "0"],
        "nan_residuals": ["--residuals", str(tmp_path / "r.csv")],
        "two_ways": [a, "-r", a, "--iou-agreement", "0.5"],
        "missing_file": [a, "-r", str(tmp_path / "nope.json")],
        "negative_pred_noise": ["--iou-agreement", "0.85", "--pred-noise", "-1"],
        "zero_pred_noise": ["--iou-agreement", "0.85", "--pred-noise", "0"],
        "partial_pred_noise": ["--iou-agreement", "0.85", "--pred-noise", "x=1/10"],
    }[case]
    (tmp_path / "r.csv").write_text("r\n0.1\nnan\n0.3\n", encoding="utf-8")
    code, out, err = _main(monkeypatch, capsys, "noise", *args, "--out", str(tmp_path / "o"))
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], err
    assert "Traceback" not in err
