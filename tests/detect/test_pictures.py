"""Per-class AP from COCOeval's precision array, the PR figure, `data show`, TensorBoard scalars."""

from __future__ import annotations

import contextlib
import csv
import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from huberkl.detect.data.datasets import build_coco
from huberkl.detect.evaluation.coco_eval import coco_eval, coco_metrics
from huberkl.detect.evaluation.pictures import class_ap, show_split, write_class_report
from tests.helpers.cli import run


def _gt() -> dict:
    """Three images, sparse category ids 3, 7, 11 (11 has no boxes), one crowd box."""
    images = [{"id": i, "file_name": f"{i}.png", "width": 100, "height": 100} for i in (1, 2, 3)]
    anns, aid = [], 0
    for img, cat, box in [
        (1, 3, [10, 10, 30, 30]),
        (1, 7, [50, 50, 20, 40]),
        (2, 3, [5, 5, 40, 20]),
        (2, 7, [60, 10, 30, 30]),
        (3, 7, [20, 20, 50, 50]),
    ]:
        aid += 1
        anns.append({"id": aid, "image_id": img, "category_id": cat, "bbox": box,
                     "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    anns.append({"id": 99, "image_id": 3, "category_id": 3, "bbox": [0, 0, 20, 20], "area": 400,
                 "iscrowd": 1})  # fmt: skip
    cats = [{"id": c, "name": n} for c, n in ((3, "cat"), (7, "dog"), (11, "emu"))]
    return {"images": images, "annotations": anns, "categories": cats}


def _detections(gt: dict) -> list[dict]:
    """Class 3 found exactly; class 7: one exact, one off by a few pixels, one false positive
    ranked above a true one, one missed."""
    return [
        {"image_id": 1, "category_id": 3, "bbox": [10, 10, 30, 30], "score": 0.9},
        {"image_id": 2, "category_id": 3, "bbox": [5, 5, 40, 20], "score": 0.8},
        {"image_id": 1, "category_id": 7, "bbox": [50, 50, 20, 40], "score": 0.95},
        {"image_id": 2, "category_id": 7, "bbox": [63, 12, 30, 30], "score": 0.6},
        {"image_id": 3, "category_id": 7, "bbox": [0, 70, 20, 20], "score": 0.7},
        {"image_id": 3, "category_id": 3, "bbox": [1, 1, 19, 19], "score": 0.5},  # on the crowd
    ]


def test_class_ap_equals_cocoeval_of_each_class_alone() -> None:
    """Per-class AP from the precision array = COCOeval's AP with only that class scored."""
    gt = build_coco(_gt())
    rows = _detections(gt.dataset)
    table = class_ap(coco_eval(gt, rows))
    assert [r["category_id"] for r in table] == [3, 7, 11]
    assert [r["boxes"] for r in table] == [2, 3, 0]  # the crowd box is not counted
    for r in table[:2]:
        ev = coco_eval(gt, rows)
        ev.params.catIds = [r["category_id"]]
        ev.evaluate()
        ev.accumulate()
        with contextlib.redirect_stdout(io.StringIO()):
            ev.summarize()
        for k, i in (("AP", 0), ("AP50", 1), ("AP75", 2)):
            assert math.isclose(r[k], ev.stats[i], abs_tol=1e-12), (r, k)
    # By hand: class 3 is found exactly (the detection on the crowd region is ignored).
    assert table[0]["AP"] == pytest.approx(1.0)
    # Class 7 at IoU 0.5: hits at ranks 1 and 3 of 3 ground truths (rank 2 is false):
    # precision envelope 1 up to recall 1/3, 2/3 up to 2/3, then nothing: 101-point mean.
    r = np.linspace(0, 1, 101)
    p = np.where(r <= 1 / 3 + 1e-9, 1.0, np.where(r <= 2 / 3 + 1e-9, 2 / 3, 0.0))
    assert table[1]["AP50"] == pytest.approx(p.mean(), abs=1e-12)
    assert math.isnan(table[2]["AP"])  # no ground truth
    # The mean over classes with ground truth is COCO's AP.
    assert np.mean([t["AP"] for t in table[:2]]) == pytest.approx(coco_metrics(gt, rows)["AP"])


def test_class_report_writes_csv_figure_and_table(tmp_path, capsys) -> None:
    gt = build_coco(_gt())
    table = write_class_report(gt, _detections(gt.dataset), None, tmp_path)
    with open(tmp_path / "class_ap.csv", encoding="utf-8") as fh:
        read = list(csv.DictReader(fh))
    assert [r["name"] for r in read] == ["cat", "dog", "emu"]
    assert float(read[1]["AP"]) == pytest.approx(table[1]["AP"]) and read[2]["AP"] == ""
    with Image.open(tmp_path / "pr.png") as im:
        assert im.format == "PNG" and im.size[0] > 600
    err = capsys.readouterr().err
    assert "AP per class" in err and "dog" in err
    (tmp_path / "none").mkdir()
    empty = write_class_report(gt, [], None, tmp_path / "none")  # no detections at all
    assert [r["AP"] for r in empty[:2]] == [0.0, 0.0] and (tmp_path / "none" / "pr.png").is_file()


@pytest.fixture(scope="module")
def noisy_root(tmp_path_factory) -> Path:
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    root = tmp_path_factory.mktemp("synth")
    synthesize(
        root, SynthSchema(images=6, size=64, seed=0, noise="laplace", noise_scale=0.1, val_images=3)
    )
    return root


def test_show_puts_noisy_beside_clean(noisy_root, tmp_path) -> None:
    ann = noisy_root / "annotations"
    train = show_split(noisy_root / "images" / "train", ann / "instances_train.json",
                       tmp_path / "train.png", n=4)  # fmt: skip
    assert train["paired"] and train["images"] == 4
    assert train["clean_ann"] == ann / "instances_train_clean.json"
    val = show_split(noisy_root / "images" / "val", ann / "instances_val.json",
                     tmp_path / "val.png", n=16)  # fmt: skip
    assert not val["paired"] and val["images"] == 3
    with Image.open(tmp_path / "train.png") as a, Image.open(tmp_path / "val.png") as b:
        # 64-px images drawn at 512 px: 2x2 pairs (each two images wide, under captions)
        # vs 2x2 singles (3 images, two per row).
        assert a.size[0] > 1.8 * b.size[0] and b.size == (2 * 512 + 3 * 16, 2 * 512 + 3 * 16)
        assert b.size[1] < a.size[1] < b.size[1] + 2 * 60  # a caption strip above each row
        grid = np.asarray(a.convert("L"))
    # the caption above each half: dark text on white, left half and right half of a pair
    strip = grid[16:36, 16 : 16 + 2 * 512 + 6]
    assert (strip < 100).any() and (strip == 255).mean() > 0.8
    left, right = strip[:, :512], strip[:, 512 + 6 :]
    assert (left < 100).sum() > (right < 100).sum() > 0  # "training boxes (noisy)" is longer


def test_pictures_are_drawn_at_a_readable_size() -> None:
    """A small image is enlarged (whole factor, nearest) with its boxes; a large one is not;
    labels sit on tags above their boxes, in a font that grows with the picture."""
    import torch

    from huberkl.detect.evaluation.pictures import (
        READABLE_SHORT,
        enlarge,
        font_size,
        line_width,
        picture,
    )

    image = torch.zeros(3, 128, 96, dtype=torch.uint8)
    boxes = torch.tensor([[10.0, 20.0, 50.0, 60.0]])
    big, scaled = enlarge(image, boxes)
    assert big.shape[-2:] == (128 * 6, 96 * 6) and min(big.shape[-2:]) >= READABLE_SHORT
    assert scaled.tolist() == [[60.0, 120.0, 300.0, 360.0]]
    odd, scaled = enlarge(torch.zeros(3, 400, 600, dtype=torch.uint8), boxes)
    assert odd.shape[-2:] == (512, 768) and scaled[0, 3].item() == pytest.approx(60 * 512 / 400)
    large = torch.zeros(3, 800, 1000, dtype=torch.uint8)
    assert enlarge(large, boxes)[0] is large
    assert (font_size(big), line_width(big)) == (18, 2) and font_size(image) == 12
    drawn = picture(torch.zeros(3, 128, 96), boxes, [1], ["rectangle 0.93"])
    assert drawn.dtype == torch.uint8 and drawn.shape == big.shape
    rows = drawn.float().sum(dim=(0, 2)).nonzero().flatten()
    assert rows.min() < 120 - 10  # the tag is above the box's top edge (y = 120 drawn)
    untouched = drawn[:, 200:300, 100:250]  # inside the box: nothing drawn over the object
    assert untouched.sum() == 0


def test_run_says_which_set_it_reads_in_one_short_line(noisy_root) -> None:
    """The ``data:`` line of a run: the folder and its noise in a few words; the whole
    ``info`` goes to run.json (the record)."""
    from huberkl import config
    from huberkl.detect.data import sets

    said: list[str] = []
    cfg = config.compose([f"data.root={noisy_root}", "data.synth.noise=gaussian"])
    record = sets.ensure_dataset(cfg.data, said.append)
    assert len(said) == 1
    line = said[0].replace(str(noisy_root), "ROOT")
    assert line == (
        "data: ROOT (synthetic, noise=laplace noise_scale=0.1); trains on it "
        "(data.synth differs: noise, noise_scale, images, +2 more)"
    )
    assert sorted(record["differs_from_config"]) == sorted(
        ["images", "noise", "noise_scale", "size", "val_images"]
    )
    assert record["info"]["noise_description"].startswith("edges:")
    targets = {"noise": "laplace", "noise_model": "targets", "noise_scale": 0.05,
               "noise_scales": {"x": 0.05, "y": 0.05, "w": 0.1, "h": 0.1}}  # fmt: skip
    assert sets.brief_noise(targets) == "noise=laplace targets 0.05/0.05/0.1/0.1"
    assert sets.brief_noise({"noise": "none"}) == "noise=none"


def test_data_show_cli(noisy_root, tmp_path, monkeypatch, capsys) -> None:
    out = tmp_path / "show"
    code, stdout, err = run(monkeypatch, capsys, "data", "show", "--n", "2", "--out", str(out),
                            f"data.root={noisy_root}")  # fmt: skip
    assert code == 0, err
    assert (out / "train.png").is_file() and (out / "config.yaml").is_file()
    assert "noisy | clean" in stdout
    code, _, err = run(monkeypatch, capsys, "data", "show", "--split", "test")
    assert code == 2 and "--split" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(monkeypatch, capsys, "data", "show", "--n", "0", "--out",
                       str(tmp_path / "x"), f"data.root={noisy_root}")  # fmt: skip
    assert code == 2 and "--n" in err


def test_tensorboard_scalars(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from huberkl.detect.training.logger import ScalarLog
    from huberkl.errors import InputError

    log = ScalarLog("tensorboard", tmp_path)
    for step in (1, 2, 3):
        log.scalars(step, {"loss": 1.0 / step, "lr": 0.1, "split": "val"}, "train/")
    log.close()
    resumed = ScalarLog("tensorboard", tmp_path, start_iter=2)  # drops step 3, then rewrites it
    resumed.scalars(3, {"loss": 0.25}, "train/")
    resumed.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"train/loss", "train/lr"}
    assert [(s.step, s.value) for s in acc.Scalars("train/loss")] == [(1, 1.0), (2, 0.5), (3, 0.25)]
    ScalarLog("csv", tmp_path / "csv").scalars(1, {"loss": 1.0})
    assert not (tmp_path / "csv").exists()
    with pytest.raises(InputError, match="detect.log must be one of csv|tensorboard"):
        ScalarLog("wandb", tmp_path)


def test_training_and_evaluate_write_scalars_class_ap_and_pr(
    noisy_root, tmp_path, monkeypatch, capsys
):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from huberkl.detect.training.checkpoint import read_checkpoint
    from tests.helpers.detect_tiny import TINY_MODEL

    tiny = [f"data.root={noisy_root}", *TINY_MODEL, "data.synth.images=6", "data.synth.size=64",
            "data.synth.val_images=3", "data.synth.noise=laplace", "data.synth.noise_scale=0.1",
            "detect.batch_size=2", "detect.workers=0", "detect.ckpt_every=0",
            "detect.schedule.warmup_iters=1", "detect.iters=2"]  # fmt: skip
    out = tmp_path / "train"
    code, _, err = run(
        monkeypatch, capsys, "detect", "--out", str(out), *tiny, "detect.log=tensorboard"
    )
    assert code == 0, err
    assert "AP per class" in err and (out / "class_ap.csv").is_file() and (out / "pr.png").is_file()
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/loss_box_reg", "eval/AP", "eval/AP50"} <= tags
    assert [s.step for s in acc.Scalars("train/loss")] == [1, 2]
    assert [s.step for s in acc.Scalars("eval/AP")] == [2]
    names = [c["name"] for c in read_checkpoint(out / "checkpoint.pt")["categories"]]
    assert names == ["rectangle", "ellipse", "triangle", "cross", "star"]

    ev = tmp_path / "eval"
    code, _, err = run(monkeypatch, capsys, "detect", "evaluate", "--checkpoint", str(out),
                       "--out", str(ev), *tiny)  # fmt: skip
    assert code == 0, err
    assert (ev / "class_ap.csv").read_text(encoding="utf-8") == (out / "class_ap.csv").read_text(
        encoding="utf-8"
    )
    assert (ev / "pr.png").is_file()
    code, _, err = run(monkeypatch, capsys, "detect", "--out", str(tmp_path / "bad"), *tiny,
                       "detect.log=wandb")  # fmt: skip
    assert code == 2 and "detect.log='wandb': expected csv or tensorboard" in err
