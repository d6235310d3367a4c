"""Read any COCO-format split (image folder + instances JSON) for torchvision's detectors.

pycocotools holds the ground truth (``ds.coco``) so that evaluation scores exactly what was
read. Crowd boxes are ignored and boxes of width or height <= ``min_size`` pixels (after
clipping to the image) are skipped; both are counted in ``ds.skipped`` and logged. COCO
category ids (sparse, e.g. 1..90) map to contiguous labels 1..C, 0 being background.

Bad input fails early with one line naming the file and what is wrong: a missing folder or
image file, malformed JSON, an empty split, an annotation of an unknown category or image.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools.coco import COCO
from torch.utils.data import Dataset

from huberkl.errors import InputError

log = logging.getLogger(__name__)

Target = dict[str, Any]


def _load_json(ann_file: Path) -> dict:
    if not ann_file.is_file():
        raise InputError(f"{ann_file}: annotation file not found")
    try:
        with open(ann_file, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{ann_file}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{ann_file}: not a UTF-8 JSON file ({exc.reason})") from None
    if not isinstance(data, dict):
        raise InputError(f"{ann_file}: expected a COCO JSON object, got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{ann_file}: missing or non-list COCO key {key!r}")
    return data


def _validate(data: dict, ann_file: Path) -> None:
    """Check ids and fields once, so that errors name the file instead of failing mid-epoch."""
    cats = data["categories"]
    if not cats:
        raise InputError(f"{ann_file}: no categories")
    cat_ids = set()
    for cat in cats:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise InputError(f"{ann_file}: category without an integer 'id': {cat!r:.80}")
        cat_ids.add(cat["id"])
    if len(cat_ids) != len(cats):
        raise InputError(f"{ann_file}: duplicate category ids")
    if not data["images"]:
        raise InputError(f"{ann_file}: empty split: no images")
    img_ids = set()
    for img in data["images"]:
        if not isinstance(img, dict) or "id" not in img or "file_name" not in img:
            raise InputError(f"{ann_file}: image entry without 'id' and 'file_name': {img!r:.80}")
        img_ids.add(img["id"])
    if len(img_ids) != len(data["images"]):
        raise InputError(f"{ann_file}: duplicate image ids")
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise InputError(f"{ann_file}: annotation is not an object: {ann!r:.80}")
        aid = ann.get("id", "?")
        if ann.get("category_id") not in cat_ids:
            raise InputError(
                f"{ann_file}: annotation {aid} has unknown category_id "
                f"{ann.get('category_id')!r} (known: {sorted(cat_ids)[:10]}"
                f"{' ...' if len(cat_ids) > 10 else ''})"
            )
        if ann.get("image_id") not in img_ids:
            raise InputError(
                f"{ann_file}: annotation {aid} refers to unknown image_id {ann.get('image_id')!r}"
            )
        bbox = ann.get("bbox")
        if not ann.get("iscrowd", 0) and not (
            isinstance(bbox, (list, tuple))
            and len(bbox) == 4
            and all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
        ):
            raise InputError(
                f"{ann_file}: annotation {aid} has a bad bbox {bbox!r:.60} (need [x, y, w, h])"
            )


def _check_images(image_dir: Path, images: Sequence[dict], ann_file: Path) -> None:
    if not image_dir.is_dir():
        raise InputError(f"{image_dir}: image folder not found (for {ann_file})")
    present = set(os.listdir(image_dir))
    missing = [
        img["file_name"]
        for img in images
        if img["file_name"] not in present and not (image_dir / img["file_name"]).is_file()
    ]
    if missing:
        more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
        raise InputError(
            f"{image_dir / missing[0]}: image file missing{more} (listed in {ann_file})"
        )


def build_coco(data: dict) -> COCO:
    """A pycocotools ``COCO`` from an in-memory dict, without its progress prints."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(Dataset):
    """One COCO-format split as ``(image [3, H, W] in [0, 1], target)`` pairs.

    ``target = {"boxes": [N, 4] xyxy pixels, "labels": [N] int64 in 1..C, "image_id": int}``;
    images without boxes are kept (boxes of shape [0, 4]) unless ``train=True``, which drops
    them. ``train=True`` with ``hflip=True`` flips half the images horizontally, chosen from
    ``(seed, epoch, index)`` so that a resumed run sees the same flips (call
    :meth:`set_epoch` each epoch).
    """

    def __init__(
        self,
        image_dir: str | Path,
        ann_file: str | Path,
        train: bool = False,
        min_size: float = 1.0,
        hflip: bool = False,
        seed: int = 0,
    ) -> None:
        self.image_dir, self.ann_file = Path(image_dir), Path(ann_file)
        self.train, self.min_size, self.hflip, self.seed = train, float(min_size), hflip, seed
        self.epoch = 0
        data = _load_json(self.ann_file)
        _validate(data, self.ann_file)
        _check_images(self.image_dir, data["images"], self.ann_file)
        self.coco = build_coco(data)
        self.cat_ids: list[int] = sorted(self.coco.getCatIds())
        self.num_classes = len(self.cat_ids)
        self._cat_to_label = {c: i + 1 for i, c in enumerate(self.cat_ids)}
        self.skipped = {"crowd": 0, "degenerate": 0, "empty_images": 0}
        self._targets: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        ids = []
        for img_id in sorted(self.coco.getImgIds()):
            boxes, labels = self._read_boxes(img_id)
            if train and len(boxes) == 0:
                self.skipped["empty_images"] += 1
                continue
            self._targets[img_id] = (boxes, labels)
            ids.append(img_id)
        if not ids:
            raise InputError(f"{self.ann_file}: empty split: no image with a usable box")
        self.ids: list[int] = ids
        log.info(
            "%s: %d images, %d boxes, %d classes; skipped %d crowd, %d degenerate boxes, "
            "%d images without boxes",
            self.ann_file,
            len(ids),
            sum(len(b) for b, _ in self._targets.values()),
            self.num_classes,
            self.skipped["crowd"],
            self.skipped["degenerate"],
            self.skipped["empty_images"],
        )

    def _read_boxes(self, img_id: int) -> tuple[np.ndarray, np.ndarray]:
        info = self.coco.imgs[img_id]
        width, height = info.get("width"), info.get("height")
        boxes, labels = [], []
        for ann in self.coco.imgToAnns.get(img_id, []):
            if ann.get("iscrowd", 0):
                self.skipped["crowd"] += 1
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            x0, y0, x1, y1 = x, y, x + w, y + h
            if width is not None and height is not None:
                x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
                y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
            if x1 - x0 <= self.min_size or y1 - y0 <= self.min_size:
                self.skipped["degenerate"] += 1
                continue
            boxes.append((x0, y0, x1, y1))
            labels.append(self._cat_to_label[ann["category_id"]])
        return (
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64),
        )

    def label_to_cat_id(self, label: int) -> int:
        """Contiguous label 1..C -> the dataset's category id."""
        label = int(label)
        if not 1 <= label <= self.num_classes:
            raise InputError(f"label {label}: allowed are 1..{self.num_classes}")
        return self.cat_ids[label - 1]

    def cat_id_to_label(self, cat_id: int) -> int:
        """The dataset's category id -> contiguous label 1..C."""
        try:
            return self._cat_to_label[int(cat_id)]
        except KeyError:
            raise InputError(
                f"category id {cat_id}: not in {self.ann_file} (known: {self.cat_ids[:10]})"
            ) from None

    @property
    def category_names(self) -> list[str]:
        """Names in label order (label 1 first)."""
        return [self.coco.cats[c].get("name", str(c)) for c in self.cat_ids]

    def stats(self) -> dict[str, Any]:
        """Counts for logs: images, images without boxes, boxes per label (1..C), skipped."""
        per_class = [0] * self.num_classes
        empty = 0
        for boxes, labels in self._targets.values():
            empty += len(boxes) == 0
            for label in labels.tolist():
                per_class[label - 1] += 1
        return {
            "images": len(self.ids),
            "images_without_boxes": empty,
            "boxes": sum(per_class),
            "boxes_per_class": dict(zip(self.category_names, per_class, strict=True)),
            "skipped": dict(self.skipped),
        }

    def set_epoch(self, epoch: int) -> None:
        """Choose this epoch's flips (deterministic, so resuming sees the same data)."""
        self.epoch = int(epoch)

    def image_path(self, index: int) -> Path:
        return self.image_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target]:
        img_id = self.ids[index]
        path = self.image_path(index)
        try:
            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
        except (UnidentifiedImageError, OSError) as exc:
            raise InputError(f"{path}: cannot read image ({exc.__class__.__name__})") from None
        image = torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)  # (3, H, W)
        boxes_np, labels_np = self._targets[img_id]
        boxes = torch.from_numpy(boxes_np.copy())
        if self.train and self.hflip:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if rng.random() < 0.5:
                width = image.shape[-1]
                image = image.flip(-1)
                boxes = torch.stack(
                    [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1
                )
        target = {"boxes": boxes, "labels": torch.from_numpy(labels_np.copy()), "image_id": img_id}
        return image, target


def collate_fn(batch: Sequence[tuple[torch.Tensor, Target]]) -> tuple[list, list]:
    """Keep images of different sizes apart: torchvision's detectors take lists."""
    images, targets = zip(*batch, strict=True) if batch else ((), ())
    return list(images), list(targets)


def load_split(data_cfg: Any, split: str, train: bool | None = None, **kwargs) -> CocoDetection:
    """The ``train`` or ``val`` split named by a ``data`` config group (``conf/data/*.yaml``).

    ``train`` defaults to ``split == "train"`` (drops images without boxes).
    """
    if split not in ("train", "val"):
        raise InputError(f"split={split!r}: allowed are train, val")
    return CocoDetection(
        data_cfg[f"{split}_images"],
        data_cfg[f"{split}_ann"],
        train=(split == "train") if train is None else train,
        min_size=float(data_cfg.get("min_size", 1.0)),
        **kwargs,
    )
