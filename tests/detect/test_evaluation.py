"""COCO box AP through pycocotools: perfect detections score 1, worse ones less, none 0."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from huberkl.detect.data import synth
from huberkl.detect.data.datasets import CocoDetection, collate_fn
from huberkl.detect.evaluation.coco_eval import METRIC_KEYS, coco_metrics, evaluate, predict
from huberkl.errors import InputError
from huberkl.schema import SynthSchema


@pytest.fixture(scope="module")
def val(tmp_path_factory) -> CocoDetection:
    """A small synthetic val split with sparse category ids (10, 20, ...)."""
    root = tmp_path_factory.mktemp("eval")
    paths = synth.synthesize(root, SynthSchema(images=1, val_images=12, size=96, seed=2))
    data = json.loads(paths["val_ann"].read_text(encoding="utf-8"))
    for cat in data["categories"]:
        cat["id"] *= 10
    for ann in data["annotations"]:
        ann["category_id"] *= 10
    paths["val_ann"].write_text(json.dumps(data), encoding="utf-8")
    return CocoDetection(paths["val_images"], paths["val_ann"])


def _gt_rows(ds: CocoDetection) -> list[dict]:
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "bbox": a["bbox"],
            "score": 1.0,
        }
        for a in ds.coco.dataset["annotations"]
    ]


def test_perfect_detections_score_one(val):
    metrics = coco_metrics(val.coco, _gt_rows(val))
    assert set(metrics) == set(METRIC_KEYS)
    for key in ("AP", "AP50", "AP75", "APs", "APm", "AR10", "AR100"):
        torch.testing.assert_close(metrics[key], 1.0, msg=key)
    assert metrics["APl"] == -1.0  # no object above 96^2 px: COCO's "absent"


def test_perturbed_detections_score_less(val):
    perfect = coco_metrics(val.coco, _gt_rows(val))["AP"]
    shifted = []
    for row in _gt_rows(val):
        x, y, w, h = row["bbox"]
        shifted.append({**row, "bbox": [x + 0.2 * w, y - 0.1 * h, w, h]})
    m = coco_metrics(val.coco, shifted)
    assert m["AP"] < perfect and m["AP75"] < 1.0
    torch.testing.assert_close(m["AP50"], 1.0)  # IoU of a 20 %/10 % shift is still > 0.5
    wrong = [{**r, "category_id": 10 + r["category_id"] % 50} for r in _gt_rows(val)]
    assert coco_metrics(val.coco, wrong)["AP50"] < 0.5


def test_rows_are_not_modified(val):
    rows = _gt_rows(val)
    before = json.dumps(rows)
    coco_metrics(val.coco, rows)
    assert json.dumps(rows) == before


def test_no_detections_score_zero(val):
    metrics = coco_metrics(val.coco, [])
    assert metrics["AP"] == 0.0 and metrics["AP50"] == 0.0 and metrics["AR100"] == 0.0
    assert metrics["APl"] == -1.0


def test_img_ids_restricts_the_scoring(val):
    first = val.ids[:3]
    rows = [r for r in _gt_rows(val) if r["image_id"] in first]
    assert coco_metrics(val.coco, rows)["AR100"] < 1.0
    torch.testing.assert_close(coco_metrics(val.coco, rows, img_ids=first)["AR100"], 1.0)


def test_detections_for_unknown_images_are_an_error(val):
    rows = [{"image_id": 999, "category_id": 10, "bbox": [0, 0, 5, 5], "score": 0.5}]
    with pytest.raises(InputError, match="999"):
        coco_metrics(val.coco, rows)


class Oracle(nn.Module):
    """A stand-in detector that returns the ground truth of each image it is shown, in order."""

    def __init__(self, ds: CocoDetection) -> None:
        super().__init__()
        self.targets = [ds[i][1] for i in range(len(ds))]
        self.seen = 0
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        assert not self.training
        out = []
        for _ in images:
            t = self.targets[self.seen]
            self.seen += 1
            out.append(
                {"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))}
            )
        return out


def test_evaluate_maps_labels_and_writes_files(val, tmp_path):
    loader = DataLoader(val, batch_size=5, collate_fn=collate_fn)
    metrics = evaluate(Oracle(val), loader, val.coco, "cpu", val.label_to_cat_id, out_dir=tmp_path)
    torch.testing.assert_close(metrics["AP"], 1.0)
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8")) == metrics
    rows = json.loads((tmp_path / "detections.json").read_text(encoding="utf-8"))
    assert len(rows) == len(val.coco.dataset["annotations"])
    assert {r["category_id"] for r in rows} <= {10, 20, 30, 40, 50}
    assert set(rows[0]) == {"image_id", "category_id", "bbox", "score"}
    # A list or dict works as the label map too.
    table = {label: val.label_to_cat_id(label) for label in range(1, val.num_classes + 1)}
    assert predict(Oracle(val), loader, "cpu", table) == rows


def test_evaluate_scores_only_the_images_seen(val):
    subset = torch.utils.data.Subset(val, range(4))
    loader = DataLoader(subset, batch_size=2, collate_fn=collate_fn)
    metrics = evaluate(Oracle(val), loader, val.coco, "cpu", val.label_to_cat_id)
    torch.testing.assert_close(metrics["AR100"], 1.0)


def test_predict_runs_a_torchvision_detector(val):
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=8, padding=1), nn.ReLU())
    backbone.out_channels = 8
    model = FasterRCNN(
        backbone,
        num_classes=val.num_classes + 1,
        min_size=96,
        max_size=96,
        rpn_anchor_generator=AnchorGenerator(((16, 32),), ((1.0,),)),
        box_score_thresh=0.0,
    )
    loader = DataLoader(torch.utils.data.Subset(val, range(2)), batch_size=2, collate_fn=collate_fn)
    rows = predict(model, loader, "cpu", val.label_to_cat_id)
    assert rows, "a random detector with score threshold 0 returns boxes"
    for row in rows:
        assert row["image_id"] in val.ids[:2] and row["category_id"] in {10, 20, 30, 40, 50}
        assert len(row["bbox"]) == 4 and row["bbox"][2] >= 0 and 0 <= row["score"] <= 1
    metrics = coco_metrics(val.coco, rows, img_ids=val.ids[:2])
    assert 0.0 <= metrics["AP"] < 0.5


class Shifted(Oracle):
    """The ground truth, every second image's boxes moved by a fifth of their width."""

    def forward(self, images: list[torch.Tensor]) -> list[dict]:
        out = super().forward(images)
        for k, o in enumerate(out):
            if (self.seen - len(out) + k) % 2:
                boxes = o["boxes"].clone()
                boxes[:, [0, 2]] += 0.2 * (boxes[:, 2:3] - boxes[:, 0:1])
                o["boxes"] = boxes
        return out


def test_one_cocoeval_feeds_the_metrics_and_the_class_report(val, tmp_path, monkeypatch):
    """Training's evaluation runs COCOeval once; the class table is what a fresh run gives."""
    from pycocotools.cocoeval import COCOeval

    from huberkl.detect import dist
    from huberkl.detect.evaluation.evaluate import evaluate_model
    from huberkl.detect.evaluation.pictures import CLASS_AP_CSV, write_class_report

    calls = []
    original = COCOeval.evaluate
    monkeypatch.setattr(COCOeval, "evaluate", lambda self: calls.append(1) or original(self))
    metrics = evaluate_model(Shifted(val), val, dist.DistInfo(), tmp_path, batch_size=5)
    assert len(calls) == 1
    assert 0.0 < metrics["AP"] < 1.0 and metrics["images"] == len(val.coco.getImgIds())
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8")) == metrics
    rows = json.loads((tmp_path / "detections.json").read_text(encoding="utf-8"))
    assert metrics == {**coco_metrics(val.coco, rows), "images": 12, "detections": len(rows)}
    (tmp_path / "again").mkdir()
    write_class_report(val.coco, rows, None, tmp_path / "again")
    assert len(calls) == 3  # coco_metrics and the report above, each its own COCOeval
    again = (tmp_path / "again" / CLASS_AP_CSV).read_text(encoding="utf-8")
    assert (tmp_path / CLASS_AP_CSV).read_text(encoding="utf-8") == again
