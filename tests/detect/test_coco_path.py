"""The paper's COCO path end to end on real-looking input (slow: about a minute on 2 cores).

A COCO-2017-layout folder of 640x480 JPEGs written here, with crowd regions (RLE masks,
``iscrowd=1``) and sparse category ids, goes through ``detect=coco data=coco``: the COCO
config's 800/1333 resizing (480x640 -> 800x1066), ImageNet backbone weights by
torchvision name from the hub cache, a few SGD iterations, COCOeval, the per-class table,
then ``detect predict`` on the val folder.

One override differs from the paper's configuration, for time only: ResNet-18 instead of
ResNet-50 under the FPN (ResNet-50 at 800x1066 costs several times more per step on a
CPU; both backbones go through the same weights-by-name and FPN code).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from tests.helpers.cli import run

CATEGORIES = [
    {"id": 3, "name": "car", "supercategory": "vehicle"},
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
]
W, H = 640, 480


def _write_split(root: Path, split: str, n: int, first_id: int, rng: np.random.Generator) -> None:
    folder = root / f"{split}2017"
    folder.mkdir(parents=True)
    images, anns = [], []
    colours = {3: (200, 40, 40), 18: (40, 160, 60), 90: (50, 80, 210)}
    for i in range(n):
        img_id = first_id + 7 * i  # sparse image ids too, as COCO's
        base = rng.integers(90, 160, size=(H, W, 3), dtype=np.uint8)
        im = Image.fromarray(base)
        draw = ImageDraw.Draw(im)
        for _ in range(3):
            cat = int(rng.choice(list(colours)))
            w, h = (int(v) for v in rng.integers(60, 200, size=2))
            x, y = int(rng.integers(0, W - w)), int(rng.integers(0, H - h))
            (draw.ellipse if cat == 18 else draw.rectangle)([x, y, x + w, y + h], fill=colours[cat])
            anns.append({"id": len(anns) + 1 + 1000 * first_id, "image_id": img_id, "category_id": cat,
                         "bbox": [x, y, w, h], "area": float(w * h), "iscrowd": 0,
                         "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})  # fmt: skip
        # A crowd region: an RLE mask over a patch of small figures, as COCO marks crowds.
        m = np.zeros((H, W), dtype=np.uint8, order="F")
        cx, cy = int(rng.integers(0, W - 120)), int(rng.integers(0, H - 80))
        for k in range(6):
            draw.rectangle([cx + 20 * k, cy, cx + 20 * k + 12, cy + 60], fill=colours[3])
            m[cy : cy + 61, cx + 20 * k : cx + 20 * k + 13] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode("ascii")
        anns.append({"id": len(anns) + 1 + 1000 * first_id, "image_id": img_id, "category_id": 3,
                     "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                     "area": float(mask_utils.area(rle)), "iscrowd": 1, "segmentation": rle})  # fmt: skip
        name = f"{img_id:012d}.jpg"
        im.save(folder / name, quality=90)
        images.append({"id": img_id, "file_name": name, "width": W, "height": H})
    (root / "annotations").mkdir(exist_ok=True)
    data = {"images": images, "annotations": anns, "categories": CATEGORIES}
    with open(root / "annotations" / f"instances_{split}2017.json", "w", encoding="utf-8") as fh:
        json.dump(data, fh)


@pytest.mark.slow
def test_coco_config_end_to_end(tmp_path, monkeypatch, capsys) -> None:
    rng = np.random.default_rng(0)
    root = tmp_path / "coco"
    _write_split(root, "train", 4, 9, rng)
    _write_split(root, "val", 2, 139, rng)

    # ImageNet weights by name: a ResNet-18 state dict under torchvision's file name.
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(0)
    imagenet = torchvision.models.resnet18().state_dict()
    torch.save(imagenet, hub / "resnet18-f37072fd.pth")

    args = ["detect=coco", "data=coco", f"data.root={root}",
            "detect.model.backbone=resnet18",  # time only (module docstring)
            "detect.model.backbone_weights=IMAGENET1K_V1",
            "detect.iters=3", "detect.batch_size=2", "detect.workers=0", "detect.threads=2",
            "detect.device=cpu", "detect.ckpt_every=0", "detect.schedule.warmup_iters=1",
            "detect.eval_batch_size=1", "params=exp-c"]  # fmt: skip

    from huberkl import config
    from huberkl.detect.training import train as training

    cfg = config.compose(args)
    assert (cfg.detect.model.min_size, cfg.detect.model.max_size) == (800, 1333)
    model = training.make_model(cfg, len(CATEGORIES))
    assert torch.equal(model.backbone.body.conv1.weight, imagenet["conv1.weight"])
    batch, _ = model.transform([torch.rand(3, H, W)])
    assert batch.image_sizes == [(800, 1066)]

    out = tmp_path / "run"
    code, _, err = run(monkeypatch, capsys, "detect", "--out", str(out), *args)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["images"] == 2 and metrics["iteration"] == 3
    assert all(math.isfinite(metrics[k]) and -1 <= metrics[k] <= 1 for k in ("AP", "AP50"))
    losses = (out / "losses.csv").read_text(encoding="utf-8").splitlines()
    assert len(losses) == 4 and "loss_box_reg" in losses[0]
    cat_ids = {c["id"] for c in CATEGORIES}
    rows = json.loads((out / "detections.json").read_text(encoding="utf-8"))
    assert {r["category_id"] for r in rows} <= cat_ids and {r["image_id"] for r in rows} <= {
        139,
        146,
    }
    table = (out / "class_ap.csv").read_text(encoding="utf-8").splitlines()
    assert [line.split(",")[:2] for line in table[1:]] == [
        ["3", "car"],
        ["18", "dog"],
        ["90", "toothbrush"],
    ]
    val = json.loads((root / "annotations" / "instances_val2017.json").read_text(encoding="utf-8"))
    for line in table[1:]:  # boxes scored per class: crowd regions not counted
        cid, boxes = int(line.split(",")[0]), int(line.split(",")[2])
        assert boxes == sum(
            a["category_id"] == cid and not a["iscrowd"] for a in val["annotations"]
        )

    pred = tmp_path / "pred"
    code, _, err = run(monkeypatch, capsys, "detect", "predict", "--checkpoint", str(out),
                       str(root / "val2017"), "--ann", str(root / "annotations" / "instances_val2017.json"),
                       "--score", "0.0", "--out", str(pred), "--device", "cpu")  # fmt: skip
    assert code == 0, err
    predicted = json.loads((pred / "detections.json").read_text(encoding="utf-8"))
    assert {r["image_id"] for r in predicted} <= {139, 146}
    assert sorted(p.name for p in (pred / "images").iterdir()) == [
        "000000000139.jpg",
        "000000000146.jpg",
    ]
