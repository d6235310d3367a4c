"""Match two COCO annotations of the same images box to box, and code the errors.

Boxes of the same image and category are assigned one to one by the Hungarian method
(``scipy.optimize.linear_sum_assignment``) on their IoU; pairs below ``min_iou`` are not
matches. All candidate pairs of all groups are built and scored at once with numpy; only
groups with more than one box on a side go through the assignment, one call per group.
The error of a matched box is its Faster R-CNN coding against the reference box
(docs/NOISE.md, "Target parametrisation").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from huberkl.errors import InputError


@dataclass(frozen=True)
class Boxes:
    """The non-crowd boxes of one COCO instances file, as arrays."""

    path: str
    image_ids: set[int]
    ann_id: np.ndarray
    image: np.ndarray
    category: np.ndarray
    xywh: np.ndarray
    crowd: int


def _load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"annotation file {str(p)!r} does not exist")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{p}: not a JSON file ({exc.__class__.__name__})") from None
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{p}: not a COCO instances file (no 'annotations' list)")
    return data


def boxes_from_coco(data: dict[str, Any], name: str = "annotations") -> Boxes:
    """The non-crowd boxes of a COCO instances dict; a zero-size or non-finite box is an error."""
    anns = data.get("annotations", [])
    crowd = sum(1 for a in anns if a.get("iscrowd", 0))
    keep = [a for a in anns if not a.get("iscrowd", 0)]
    try:
        xywh = np.array([a["bbox"] for a in keep], dtype=np.float64).reshape(-1, 4)
        image = np.array([a["image_id"] for a in keep], dtype=np.int64)
        category = np.array([a["category_id"] for a in keep], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise InputError(
            f"{name}: every annotation needs bbox [x, y, w, h], image_id and category_id"
        ) from None
    ann_id = np.array([a.get("id", i) for i, a in enumerate(keep)], dtype=np.int64)
    bad = ~np.isfinite(xywh).all(axis=1) | (xywh[:, 2] <= 0) | (xywh[:, 3] <= 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{name}: annotation id {int(ann_id[i])} has a zero-size or non-finite box "
            f"{xywh[i].tolist()}; boxes need finite x, y and w, h > 0"
        )
    images = data.get("images")
    image_ids = {int(im["id"]) for im in images} if isinstance(images, list) else set()
    image_ids |= set(np.unique(image).tolist())
    return Boxes(name, image_ids, ann_id, image, category, xywh, crowd)


def read_boxes(path: str | Path) -> Boxes:
    return boxes_from_coco(_load(path), str(path))


@dataclass
class Matching:
    """Matched pairs, their IoU and errors (x, y, w, h columns), and what stayed unmatched."""

    errors: np.ndarray
    iou: np.ndarray
    ann_ids: np.ndarray  # (n, 2): annotation id, reference id
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def matched(self) -> int:
        return len(self.iou)

    @property
    def unmatched(self) -> int:
        return self.counts["unmatched_annotation"] + self.counts["unmatched_reference"]


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a[i] and b[i] (xywh), vectorised."""
    ix = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2]) - np.maximum(a[:, 0], b[:, 0])
    iy = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3]) - np.maximum(a[:, 1], b[:, 1])
    inter = np.clip(ix, 0, None) * np.clip(iy, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return inter / union


def encode(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Errors of ``boxes`` against ``ref`` (xywh): ((x_c − x_c,r)/w_r, (y_c − y_c,r)/h_r, log w/w_r, log h/h_r)."""
    cx = boxes[:, 0] + 0.5 * boxes[:, 2]
    cy = boxes[:, 1] + 0.5 * boxes[:, 3]
    rx = ref[:, 0] + 0.5 * ref[:, 2]
    ry = ref[:, 1] + 0.5 * ref[:, 3]
    return np.stack(
        [
            (cx - rx) / ref[:, 2],
            (cy - ry) / ref[:, 3],
            np.log(boxes[:, 2] / ref[:, 2]),
            np.log(boxes[:, 3] / ref[:, 3]),
        ],
        axis=1,
    )


def _group(a: Boxes, r: Boxes, common: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Group ids (image, category) of the boxes of both files on common images (−1 elsewhere)."""
    _, img = np.unique(np.concatenate([a.image, r.image]), return_inverse=True)
    cats, cat = np.unique(np.concatenate([a.category, r.category]), return_inverse=True)
    _, inv = np.unique(img.ravel() * len(cats) + cat.ravel(), return_inverse=True)  # 1-D: fast
    inv = inv.ravel()
    ga, gr = inv[: len(a.image)].copy(), inv[len(a.image) :].copy()
    ga[~np.isin(a.image, common)] = -1
    gr[~np.isin(r.image, common)] = -1
    return ga, gr, int(inv.max()) + 1 if len(inv) else 0


def match(a: Boxes, r: Boxes, min_iou: float = 0.5) -> Matching:
    """Hungarian matching per image and category on IoU; pairs with IoU < ``min_iou`` dropped."""
    if not (0.0 < min_iou <= 1.0):
        raise InputError(f"min_iou must be in (0, 1], got {min_iou}")
    common = np.array(sorted(a.image_ids & r.image_ids), dtype=np.int64)
    if len(common) == 0:
        raise InputError(f"{a.path} and {r.path} have no image id in common")
    ga, gr, n_groups = _group(a, r, common)
    oa, orr = np.argsort(ga, kind="stable"), np.argsort(gr, kind="stable")
    oa, orr = oa[ga[oa] >= 0], orr[gr[orr] >= 0]
    na = np.bincount(ga[oa], minlength=n_groups)
    nr = np.bincount(gr[orr], minlength=n_groups)
    sa = np.concatenate([[0], np.cumsum(na)[:-1]])
    sr = np.concatenate([[0], np.cumsum(nr)[:-1]])
    npairs = na * nr
    g = np.repeat(np.arange(n_groups), npairs)
    k = np.arange(len(g)) - np.repeat(np.cumsum(npairs) - npairs, npairs)
    ia = oa[sa[g] + k // nr[g]]
    ir = orr[sr[g] + k % nr[g]]
    iou = pair_iou(a.xywh[ia], r.xywh[ir])
    # One-to-one groups need no assignment; the rest, one small assignment each.
    single = (na == 1) & (nr == 1)
    keep = single[g] & (iou >= min_iou)
    chosen = [np.flatnonzero(keep)]
    starts = np.cumsum(npairs) - npairs
    for grp in np.flatnonzero((npairs > 0) & ~single):
        s, m, n = starts[grp], na[grp], nr[grp]
        block = iou[s : s + m * n].reshape(m, n)
        rows, cols = linear_sum_assignment(np.where(block >= min_iou, block, 0.0), maximize=True)
        ok = block[rows, cols] >= min_iou
        chosen.append(s + rows[ok] * n + cols[ok])
    sel = np.sort(np.concatenate(chosen))
    ia, ir, iou = ia[sel], ir[sel], iou[sel]
    on_common_a, on_common_r = int((ga >= 0).sum()), int((gr >= 0).sum())
    counts = {
        "common_images": len(common),
        "annotation_boxes": on_common_a,
        "reference_boxes": on_common_r,
        "matched": len(sel),
        "unmatched_annotation": on_common_a - len(sel),
        "unmatched_reference": on_common_r - len(sel),
        "outside_common_images": int((ga < 0).sum() + (gr < 0).sum()),
        "crowd_skipped": a.crowd + r.crowd,
    }
    if len(sel) == 0:
        raise InputError(
            f"no boxes of {a.path} and {r.path} match (same image and category, "
            f"IoU >= {min_iou}); lower --min-iou or check the category ids"
        )
    errors = encode(a.xywh[ia], r.xywh[ir])
    return Matching(errors, iou, np.stack([a.ann_id[ia], r.ann_id[ir]], 1), counts)


def match_files(ann: str | Path, ref: str | Path, min_iou: float = 0.5) -> Matching:
    return match(read_boxes(ann), read_boxes(ref), min_iou)
