"""`huberkl detect predict`: a checkpoint on images and folders; rows, drawn images, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from PIL import Image

from huberkl import config
from huberkl.detect.data.datasets import CocoDetection, collate_fn
from huberkl.detect.evaluation.coco_eval import predict as eval_predict
from huberkl.detect.evaluation.predict import find_images, load_run, predict_images
from huberkl.detect.training import checkpoint as ckpt
from huberkl.detect.training import train as training
from huberkl.errors import InputError
from tests.helpers.cli import run
from tests.helpers.detect_tiny import TINY_MODEL


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Here 4 train and 5 val images (conftest's set has 4 val images): five pictures."""
    from huberkl.detect.data.synth import synthesize
    from huberkl.schema import SynthSchema

    root = tmp_path_factory.mktemp("synth")
    synthesize(
        root, SynthSchema(images=4, size=64, seed=0, noise="none", noise_scale=0.0, val_images=5)
    )
    return root


@pytest.fixture(scope="module")
def checkpoint(data_root, tmp_path_factory) -> Path:
    """A checkpoint as training writes it, of an untrained tiny detector (fast, and random
    initial scores clear the 0.05 threshold, so there are boxes to compare)."""
    cfg = config.compose([f"data.root={data_root}", *TINY_MODEL])
    ds = CocoDetection(cfg.data.train_images, cfg.data.train_ann)
    torch.manual_seed(0)
    model = training.make_model(cfg, ds.num_classes)
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    ckpt.save_checkpoint(
        {
            "model": model.state_dict(),
            "arch": ckpt.architecture(model, ds.num_classes),
            "config": OmegaConf.to_container(cfg, resolve=True),
            "config_source": OmegaConf.to_container(cfg, resolve=False),
            "iteration": 0,
            "categories": ds.coco.dataset["categories"],
        },
        path,
    )
    return path


def test_rows_equal_the_evaluation_path(checkpoint, data_root) -> None:
    """Same boxes and scores as ``evaluation.predict`` through the dataset loader; images
    listed in ``ann`` get their COCO image_id, others their file name."""
    r = load_run(checkpoint, "cpu")
    assert r.names == ["rectangle", "ellipse", "triangle", "cross", "star"]
    val = CocoDetection(
        data_root / "images" / "val", data_root / "annotations" / "instances_val.json"
    )
    loader = torch.utils.data.DataLoader(val, batch_size=1, collate_fn=collate_fn)
    expected = [row for row in eval_predict(r.model, loader, "cpu", val.label_to_cat_id)]
    assert expected
    rows = predict_images(
        r, [data_root / "images" / "val"], score=0.0, ann_file=val.ann_file, batch_size=1
    )
    key = lambda d: (d["image_id"], -d["score"], d["bbox"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(expected, key=key)

    one = data_root / "images" / "val" / val.coco.imgs[val.ids[0]]["file_name"]
    named = predict_images(r, [one], score=0.0, batch_size=1)
    assert {d["file_name"] for d in named} == {str(one)}
    assert [d["bbox"] for d in named] == [
        d["bbox"] for d in expected if d["image_id"] == val.ids[0]
    ]


def test_cli_writes_detections_and_drawn_images(
    checkpoint, data_root, tmp_path, monkeypatch, capsys
):
    images = sorted((data_root / "images" / "val").glob("*.png"))
    jpg = tmp_path / "in" / "photo.jpg"
    jpg.parent.mkdir()
    Image.open(images[0]).convert("RGB").save(jpg)
    out = tmp_path / "pred"
    code, _, err = run(
        monkeypatch, capsys, "detect", "predict", "--checkpoint", str(checkpoint),
        str(images[1]), str(jpg.parent), "--score", "0.1", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    assert rows and all(r["score"] >= 0.1 for r in rows)
    assert {r["file_name"] for r in rows} <= {str(images[1]), str(jpg)}
    assert all(set(r) == {"file_name", "category_id", "bbox", "score"} for r in rows)
    drawn = sorted(p.name for p in (out / "images").iterdir())
    assert drawn == sorted([images[1].name, "photo.jpg"])
    with Image.open(out / "images" / images[1].name) as im, Image.open(images[1]) as src:
        # 64-px images are drawn 8x (nearest): the boxes' labels stay readable
        assert src.size == (64, 64) and im.size == (512, 512)
        big = src.convert("RGB").resize(im.size, Image.NEAREST)
        assert (np.asarray(im) != np.asarray(big)).any()  # boxes were drawn
    # the rows stay in the image's own pixels
    assert all(0 <= r["bbox"][0] and r["bbox"][0] + r["bbox"][2] <= 64.001 for r in rows)
    assert (out / "config.yaml").is_file() and (out / "run.json").is_file()


def test_bad_input_is_one_line_exit_2(checkpoint, data_root, tmp_path, monkeypatch, capsys):
    img = next((data_root / "images" / "val").glob("*.png"))
    junk = tmp_path / "junk.png"
    junk.write_text("not an image", encoding="utf-8")
    text = tmp_path / "notes.txt"
    text.write_text("x", encoding="utf-8")
    empty = tmp_path / "empty"
    empty.mkdir()
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(1)}, other)
    cases = [
        ([str(tmp_path / "nope.png")], checkpoint, "nope.png"),
        ([str(junk)], checkpoint, "cannot read image"),
        ([str(text)], checkpoint, "not a JPEG or PNG"),
        ([str(empty)], checkpoint, "no JPEG or PNG images"),
        ([str(img)], other, "not a huberkl checkpoint"),
        ([str(img)], text, "not a readable huberkl checkpoint"),
        ([str(img)], tmp_path / "missing.pt", "does not exist"),
    ]
    bad_model = [str(img), "detect.model.score_thresh=abc"]  # a traceback from torchvision before
    cases.append((bad_model, checkpoint, "score_thresh must be a number in [0, 1], got 'abc'"))
    for paths, ck, needle in cases:
        args = ["detect", "predict", "--checkpoint", str(ck), *paths, "--out", str(tmp_path / "o")]
        code, _, err = run(monkeypatch, capsys, *args)
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, (needle, err)
    with pytest.raises(InputError, match="--score"):
        predict_images(load_run(checkpoint, "cpu"), [img], score=1.5)
    assert find_images([img, img.parent])[0] == img


def test_retinanet_and_checkpoints_without_categories(data_root, tmp_path) -> None:
    """A RetinaNet run predicts too; a checkpoint written before categories were stored
    takes its class names from the run's train annotations."""
    # No GroupNorm: with 16 FPN channels in 16 groups, a 1x1 P7 has one value per group.
    # Untrained, RetinaNet's prior (sigmoid 0.01) is under the default 0.05 score threshold.
    extra = ["detect.model.retinanet_head_norm=none", "+detect.model.score_thresh=0.001"]
    cfg = config.compose([f"data.root={data_root}", "detect=retinanet", *TINY_MODEL, *extra])
    model = training.make_model(cfg, 5)
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint(
        {"model": model.state_dict(), "arch": ckpt.architecture(model, 5),
         "config": OmegaConf.to_container(cfg, resolve=True), "iteration": 0},
        path,
    )  # fmt: skip
    r = load_run(path, "cpu")
    assert r.names == ["rectangle", "ellipse", "triangle", "cross", "star"]
    rows = predict_images(r, [data_root / "images" / "val"], tmp_path / "out", score=0.0)
    assert rows and {d["category_id"] for d in rows} <= {1, 2, 3, 4, 5}
    assert len(list((tmp_path / "out" / "images").iterdir())) == 5


def test_an_unreadable_image_is_skipped_and_the_rest_predicted(
    checkpoint, data_root, tmp_path, monkeypatch, capsys
):
    """One bad file in a folder: one line naming it, the others predicted and written, exit 2."""
    photos = tmp_path / "photos"
    photos.mkdir()
    good = sorted((data_root / "images" / "val").glob("*.png"))[:2]
    for f in good:
        (photos / f.name).write_bytes(f.read_bytes())
    (photos / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "pred"
    code, stdout, err = run(
        monkeypatch, capsys, "detect", "predict", "--checkpoint", str(checkpoint), str(photos),
        "--score", "0.0", "--out", str(out), "--device", "cpu",
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert "broken.png" in lines[0] and "cannot read image" in lines[0] and "skipped" in lines[0]
    assert "1 unreadable image(s) skipped" in stdout
    rows = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    assert {r["file_name"] for r in rows} == {str(photos / f.name) for f in good}
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(f.name for f in good)
    skipped = []
    rows = predict_images(
        load_run(checkpoint, "cpu"), [photos], score=0.0, batch_size=2,
        on_unreadable=lambda path, msg: skipped.append((path.name, msg)),
    )  # fmt: skip
    assert [name for name, _ in skipped] == ["broken.png"] and rows
    with pytest.raises(InputError, match="broken.png: cannot read image"):
        predict_images(load_run(checkpoint, "cpu"), [photos], score=0.0)


def test_overrides_change_what_prediction_reads(
    checkpoint, data_root, tmp_path, monkeypatch, capsys
):
    """README: predict takes overrides after its paths, applied to the checkpoint's config;
    what it does not read (or cannot change: params) is one line, before any folder."""
    img = sorted((data_root / "images" / "val").glob("*.png"))[0]
    r = load_run(checkpoint, "auto", ["detect.model.score_thresh=0.9", "detect.device=cpu"])
    assert r.model.roi_heads.score_thresh == 0.9 and r.device == torch.device("cpu")
    assert r.config["detect"]["model"]["score_thresh"] == 0.9
    assert r.config["detect"]["model"]["fpn_channels"] == 16  # the rest is the checkpoint's
    assert all(d["score"] >= 0.9 for d in predict_images(r, [img], score=0.0))
    moved = load_run(checkpoint, "cpu", [f"data.root={tmp_path}"])
    assert moved.config["data"]["train_ann"].startswith(str(tmp_path))
    assert moved.names == ["rectangle", "ellipse", "triangle", "cross", "star"]  # stored ones

    out = tmp_path / "pred"
    code, _, err = run(
        monkeypatch, capsys, "detect", "predict", "--checkpoint", str(checkpoint), str(img),
        "detect.model.detections_per_img=3", "detect.device=cpu", "--score", "0.0",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    rows = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    assert 0 < len(rows) <= 3
    saved = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8"))
    assert saved["detect"]["model"]["detections_per_img"] == 3
    code, stdout, _ = run(
        monkeypatch, capsys, "detect", "predict", "--checkpoint", str(checkpoint), str(img),
        "detect.model.nms_thresh=0.3", "--cfg",
    )  # fmt: skip
    assert code == 0 and yaml.safe_load(stdout)["detect"]["model"]["nms_thresh"] == 0.3

    cases = [
        ("detect=quick", "another architecture"),  # an override, not a missing file
        ("detect.model.fpn_channels=32", "another architecture"),
        ("detect.model.box_score_thresh=0.3", "detect.model.box_score_thresh: unknown key"),
        ("params=exp-a", "keeps the checkpoint's params"),
        ("detect.iters=5", "not read by predict"),
        ("seed=3", "not read by predict"),
        ("detect.device=gpu", "detect.device"),
    ]
    for override, needle in cases:
        where = tmp_path / "refused"
        code, _, err = run(
            monkeypatch, capsys, "detect", "predict", "--checkpoint", str(checkpoint), str(img),
            override, "--out", str(where),
        )  # fmt: skip
        assert code == 2 and len(err.strip().splitlines()) == 1 and needle in err, (override, err)
        assert not where.exists(), override
    with pytest.raises(InputError, match="give one of them"):
        load_run(checkpoint, "cpu", ["detect.device=cuda"])
