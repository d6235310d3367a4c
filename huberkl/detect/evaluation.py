"""COCO box AP with pycocotools' COCOeval, as the paper scores its detectors (Tables 3, 4).

``predict`` turns torchvision detector outputs into COCO results rows (on the CPU, keyed
by image id, so ranks can gather them); ``coco_metrics`` scores rows against the ground
truth; ``evaluate`` does both and writes ``metrics.json`` and ``detections.json``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from huberkl.detect.files import write_json
from huberkl.errors import InputError

# COCOeval.stats, in order.
METRIC_KEYS = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)

LabelMap = Callable[[int], int] | Mapping[int, int] | Sequence[int]


def _label_fn(label_to_cat_id: LabelMap) -> Callable[[int], int]:
    if callable(label_to_cat_id):
        return label_to_cat_id
    return label_to_cat_id.__getitem__


def _predict(model, loader: Iterable, device, label_to_cat_id: LabelMap):
    to_cat = _label_fn(label_to_cat_id)
    cache: dict[int, int] = {}
    rows: list[dict] = []
    seen: list[int] = []
    model.eval()
    with torch.inference_mode():
        for images, targets in loader:
            outputs = model([img.to(device, non_blocking=True) for img in images])
            for out, target in zip(outputs, targets, strict=True):
                image_id = int(target["image_id"])
                seen.append(image_id)
                boxes = box_convert(out["boxes"].float(), "xyxy", "xywh").cpu().tolist()
                scores = out["scores"].float().cpu().tolist()
                labels = out["labels"].cpu().tolist()
                for box, score, label in zip(boxes, scores, labels, strict=True):
                    if label not in cache:
                        cache[label] = int(to_cat(int(label)))
                    rows.append(
                        {
                            "image_id": image_id,
                            "category_id": cache[label],
                            "bbox": [round(v, 3) for v in box],
                            "score": round(score, 5),
                        }
                    )
    return rows, seen


def predict(model, loader: Iterable, device, label_to_cat_id: LabelMap) -> list[dict]:
    """Run ``model`` (a torchvision detector) over ``loader``; COCO results rows on the CPU.

    Each row is ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``;
    ``label_to_cat_id`` maps the model's labels 1..C back to the dataset's category ids
    (``dataset.label_to_cat_id``, or a dict or list).
    """
    return _predict(model, loader, device, label_to_cat_id)[0]


def _empty_results(coco_gt: COCO) -> COCO:
    """A results set with no detections (``COCO.loadRes([])`` fails on an empty list)."""
    from huberkl.detect.data import build_coco

    return build_coco(
        {
            "images": list(coco_gt.dataset["images"]),
            "categories": copy.deepcopy(coco_gt.dataset["categories"]),
            "annotations": [],
        }
    )


def coco_eval(
    coco_gt: COCO, rows: Sequence[dict], img_ids: Iterable[int] | None = None
) -> COCOeval:
    """COCOeval (bbox) of ``rows`` against ``coco_gt``, evaluated and accumulated, quietly.

    ``ev.eval["precision"]`` (IoU x recall x class x area x max-dets) feeds per-class AP
    and precision-recall curves (:mod:`huberkl.detect.pictures`).
    """
    known = set(coco_gt.getImgIds())
    stray = {r["image_id"] for r in rows} - known
    if stray:
        raise InputError(
            f"detections for image ids not in the ground truth: {sorted(stray)[:5]} "
            f"({len(stray)} in all)"
        )
    with contextlib.redirect_stdout(io.StringIO()):
        if rows:
            # loadRes adds keys to the rows it is given: hand it copies.
            coco_dt = coco_gt.loadRes([dict(r, bbox=list(r["bbox"])) for r in rows])
        else:
            coco_dt = _empty_results(coco_gt)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        if img_ids is not None:
            ev.params.imgIds = sorted(set(img_ids))
        ev.evaluate()
        ev.accumulate()
    return ev


def coco_metrics(
    coco_gt: COCO, rows: Sequence[dict], img_ids: Iterable[int] | None = None
) -> dict[str, float]:
    """COCOeval (bbox) of ``rows`` against ``coco_gt``: AP@[.5:.95], AP50, AP75, sizes, AR.

    ``img_ids`` restricts the scoring to those images (default: all of ``coco_gt``). A value
    is -1 where COCO gives -1 (no ground truth of that size); no detections score 0.
    """
    ev = coco_eval(coco_gt, rows, img_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    return {k: float(v) for k, v in zip(METRIC_KEYS, ev.stats, strict=True)}


def evaluate(
    model,
    loader: Iterable,
    coco_gt: COCO,
    device,
    label_to_cat_id: LabelMap,
    out_dir: str | Path | None = None,
) -> dict[str, float]:
    """:func:`predict` then :func:`coco_metrics` on the images the loader visited.

    With ``out_dir``, writes ``metrics.json`` and ``detections.json`` (COCO results format).
    """
    rows, seen = _predict(model, loader, device, label_to_cat_id)
    metrics = coco_metrics(coco_gt, rows, img_ids=seen)
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "detections.json", rows)
        write_json(out / "metrics.json", metrics)
    return metrics
