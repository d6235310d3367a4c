"""COCO box AP with pycocotools' COCOeval, as the paper scores its detectors (Tables 3, 4).

``predict`` turns torchvision detector outputs into COCO results rows (on the CPU, keyed
by image id, so ranks can gather them); ``coco_metrics`` scores rows against the ground
truth; ``evaluate`` does both, on one process or every rank of a DDP run, and writes
``metrics.json`` and ``detections.json``; training's final evaluation and ``detect
evaluate`` go through it (:mod:`.evaluate`). COCOeval runs once per evaluation:
``evaluate`` hands the same evaluated object to its ``report`` (the per-class table of
:mod:`.pictures`). torchvision's references call their counterpart ``coco_eval.py``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_convert

from huberkl.detect import dist
from huberkl.detect.files import write_json
from huberkl.errors import InputError

METRICS = "metrics.json"
DETECTIONS = "detections.json"

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
    from huberkl.detect.data.datasets import build_coco

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
    and precision-recall curves (:mod:`huberkl.detect.evaluation.pictures`).
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


def summary(ev: COCOeval) -> dict[str, float]:
    """The twelve COCO numbers (:data:`METRIC_KEYS`) of an evaluated, accumulated ``ev``."""
    with contextlib.redirect_stdout(io.StringIO()):
        ev.summarize()
    return {k: float(v) for k, v in zip(METRIC_KEYS, ev.stats, strict=True)}


def coco_metrics(
    coco_gt: COCO, rows: Sequence[dict], img_ids: Iterable[int] | None = None
) -> dict[str, float]:
    """COCOeval (bbox) of ``rows`` against ``coco_gt``: AP@[.5:.95], AP50, AP75, sizes, AR.

    ``img_ids`` restricts the scoring to those images (default: all of ``coco_gt``). A value
    is -1 where COCO gives -1 (no ground truth of that size); no detections score 0.
    """
    return summary(coco_eval(coco_gt, rows, img_ids))


# Called with the evaluation's COCOeval, rows, image ids and output folder (rank 0), e.g.
# the per-class report of :mod:`.pictures`, so that COCOeval runs once per evaluation.
Report = Callable[[COCOeval, list[dict], list[int], Path], object]


def evaluate(
    model,
    loader: Iterable,
    coco_gt: COCO,
    device,
    label_to_cat_id: LabelMap,
    out_dir: str | Path | None = None,
    *,
    img_ids: Iterable[int] | None = None,
    extra: Mapping[str, Any] | None = None,
    info: dist.DistInfo | None = None,
    report: Report | None = None,
) -> dict[str, float]:
    """:func:`predict` on every rank, then (rank 0) :func:`coco_metrics`; other ranks get ``{}``.

    Scores ``img_ids`` (default: the images the loaders visited, over all ranks). The
    metrics add the image and detection counts and ``extra``. With ``out_dir``, rank 0
    writes ``metrics.json``, ``detections.json`` (COCO results format), then ``report``.
    """
    was_training = model.training
    rows, seen = _predict(model, loader, device, label_to_cat_id)
    model.train(was_training)
    gathered = dist.gather_objects((rows, seen))
    if info is not None and not info.is_main:
        return {}
    rows = [r for part, _ in gathered for r in part]
    ids = sorted(set(img_ids if img_ids is not None else (i for _, s in gathered for i in s)))
    ev = coco_eval(coco_gt, rows, ids)
    metrics: dict[str, Any] = summary(ev)
    metrics["images"] = len(ids)
    metrics["detections"] = len(rows)
    metrics.update(extra or {})
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / METRICS, metrics, indent=1)
        write_json(out / DETECTIONS, rows)
        if report is not None:
            report(ev, rows, ids, out)
    return metrics
