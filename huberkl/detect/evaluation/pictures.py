"""Things to look at: a split's boxes drawn on its images, per-class AP, precision-recall.

- :func:`picture` draws an image's boxes with class names on tags above them, at a
  readable size (small images enlarged, the boxes scaled with them; ``detect predict``);
  :func:`show_split` draws a grid of a split's images with their boxes the same way; for a
  synthetic train split with annotation noise, each image appears twice, its noisy
  (training) boxes beside the clean ones of ``instances_train_clean.json``, each half
  captioned.
- :func:`class_ap` reads per-class AP, AP50 and AP75 from COCOeval's accumulated
  ``eval["precision"]`` array (IoU x recall x class x area x max-dets): the mean over IoU
  thresholds and the 101 recall points, area "all", 100 detections, as COCO's own AP.
- :func:`write_class_report` writes ``class_ap.csv`` and ``pr.png`` and prints the table;
  ``detect evaluate`` and training's final evaluation call it.
"""

from __future__ import annotations

import csv
import functools
import math
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO

CLASS_AP_CSV = "class_ap.csv"
PR_PNG = "pr.png"
CLEAN_TRAIN_ANN = "instances_train_clean.json"
# Distinct colours per class (tab10), as RGB tuples.
_PALETTE = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def colour(label: int) -> tuple[int, int, int]:
    """The drawing colour of contiguous label 1..C."""
    return _PALETTE[(int(label) - 1) % len(_PALETTE)]


# ----------------------------------------------------------------------------- per-class AP


def _mean_valid(p: np.ndarray) -> float:
    """Mean of the entries COCOeval filled (-1 marks a class without ground truth)."""
    valid = p[p > -1]
    return float(valid.mean()) if valid.size else float("nan")


def class_ap(ev) -> list[dict[str, Any]]:
    """Per-class AP, AP50, AP75 from an accumulated ``COCOeval`` (NaN: no ground truth).

    Each row: ``category_id, name, boxes`` (non-crowd ground-truth boxes scored) and the
    three APs, in category-id order.
    """
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    p = ev.params
    area = list(p.areaRngLbl).index("all")
    dets = list(p.maxDets).index(max(p.maxDets))
    t50 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.5))[0])
    t75 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.75))[0])
    img_ids = set(p.imgIds)
    rows = []
    for k, cat_id in enumerate(p.catIds):
        anns = ev.cocoGt.loadAnns(ev.cocoGt.getAnnIds(catIds=[cat_id], iscrowd=False))
        rows.append(
            {
                "category_id": int(cat_id),
                "name": ev.cocoGt.cats[cat_id].get("name", str(cat_id)),
                "boxes": sum(a["image_id"] in img_ids for a in anns),
                "AP": _mean_valid(precision[:, :, k, area, dets]),
                "AP50": _mean_valid(precision[t50, :, k, area, dets]),
                "AP75": _mean_valid(precision[t75, :, k, area, dets]),
            }
        )
    return rows


def write_class_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """``class_ap.csv``: one row per category (AP columns empty where there is no ground truth)."""
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["category_id"])
        writer.writeheader()
        for r in rows:
            writer.writerow(
                {k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            )
    return path


def rich_class_table(rows: Sequence[dict[str, Any]], title: str = "AP per class"):
    """The per-class rows as a rich Table (for the console)."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("id", "class", "boxes", "AP", "AP50", "AP75"):
        table.add_column(col, justify="left" if col == "class" else "right")
    for r in rows:
        table.add_row(
            str(r["category_id"]),
            str(r["name"]),
            str(r["boxes"]),
            *("-" if math.isnan(r[k]) else f"{r[k]:.3f}" for k in ("AP", "AP50", "AP75")),
        )
    return table


def pr_figure(ev, path: Path, names: Sequence[str] | None = None) -> Path:
    """Precision against recall: class means at IoU 0.5, 0.75 and averaged over 0.5:0.95
    (left), and each class at IoU 0.5 (right); area "all", 100 detections per image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    precision = np.asarray(ev.eval["precision"], dtype=float)
    p = ev.params
    area = list(p.areaRngLbl).index("all")
    dets = list(p.maxDets).index(max(p.maxDets))
    rec = np.asarray(p.recThrs)
    pr = np.where(precision[..., area, dets] > -1, precision[..., area, dets], np.nan)  # [T, R, K]
    names = list(names) if names is not None else [str(c) for c in p.catIds]

    fig = Figure(figsize=(10.0, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of a class without detections
        for label, curve, style in (
            ("IoU 0.5", np.nanmean(pr[np.isclose(p.iouThrs, 0.5)][0], axis=-1), "-"),
            ("IoU 0.75", np.nanmean(pr[np.isclose(p.iouThrs, 0.75)][0], axis=-1), "--"),
            ("IoU 0.5:0.95", np.nanmean(np.nanmean(pr, axis=0), axis=-1), ":"),
        ):
            left.plot(rec, curve, style, lw=1.6, label=label)
        t50 = int(np.flatnonzero(np.isclose(p.iouThrs, 0.5))[0])
        for k, name in enumerate(names):
            if np.all(np.isnan(pr[t50, :, k])):
                continue
            right.plot(rec, pr[t50, :, k], lw=1.0, color=np.array(colour(k + 1)) / 255, label=name)
    left.set_title("mean over classes")
    right.set_title("per class, IoU 0.5")
    for ax in (left, right):
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize=7, loc="lower left", ncol=1 + len(ax.get_lines()) // 12)
    fig.savefig(path, dpi=120)
    return path


def write_class_report(
    coco_gt: COCO,
    rows: Sequence[dict],
    img_ids: Iterable[int] | None,
    out_dir: str | Path,
    console=None,
    ev=None,
) -> list[dict[str, Any]]:
    """``class_ap.csv`` and ``pr.png`` in ``out_dir``, the table on ``console`` (stderr).

    ``ev``: the COCOeval of these rows, already evaluated and accumulated (not run again).
    """
    from rich.console import Console

    from huberkl.detect.evaluation.coco_eval import coco_eval

    out = Path(out_dir)
    if ev is None:
        ev = coco_eval(coco_gt, rows, img_ids)
    table_rows = class_ap(ev)
    write_class_csv(table_rows, out / CLASS_AP_CSV)
    pr_figure(ev, out / PR_PNG, [r["name"] for r in table_rows])
    console = console or Console(stderr=True)
    console.print(rich_class_table(table_rows))
    return table_rows


# ----------------------------------------------------------------------------- drawing

# Pictures are drawn with their short side at least this many pixels: at a 128-px image's
# own size a class name covers the object it names.
READABLE_SHORT = 512
NOISY_CAPTION = "training boxes (noisy)"
CLEAN_CAPTION = "clean boxes"


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """A [3, H, W] float image in [0, 1] as uint8 (what the drawing functions take)."""
    return image.mul(255).round_().clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=16)
def font(size: int) -> Any:
    """DejaVu Sans (shipped with matplotlib) at ``size`` px: PIL's default font is 11 px
    whatever the picture's size; a bitmap fallback only where matplotlib has no font file."""
    from PIL import ImageFont

    try:
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        return ImageFont.truetype(str(path), size)
    except (ImportError, OSError):
        return ImageFont.load_default(size)


def line_width(image: torch.Tensor) -> int:
    """Box outline width for a picture of this size (2 px at 512 px, thicker above)."""
    return max(2, round(min(image.shape[-2:]) / 256))


def font_size(image: torch.Tensor) -> int:
    """Label font size for a picture of this size (16 px at 512 px, never under 12)."""
    return max(12, round(min(image.shape[-2:]) / 32))


def _text_colour(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb`` (Rec. 601 luma)."""
    r, g, b = rgb
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 150 else (255, 255, 255)


def draw(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: Sequence[int],
    texts: Sequence[str] | None = None,
    width: int | None = None,
    text_size: int | None = None,
) -> torch.Tensor:
    """``image`` (uint8 [3, H, W]) with xyxy ``boxes`` in their label's colour.

    Each text sits on a tag of the box's colour just above the box (inside its top edge
    where the box touches the image's top), so that it does not hide what the box holds.
    ``width`` and ``text_size`` default to :func:`line_width` and :func:`font_size`.
    """
    from PIL import Image, ImageDraw

    if len(boxes) == 0:
        return image
    width = width or line_width(image)
    face = font(text_size or font_size(image))
    pic = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    pen = ImageDraw.Draw(pic)
    h, w = image.shape[-2:]
    for i, (box, label) in enumerate(zip(boxes.float().tolist(), labels, strict=True)):
        x0, y0, x1, y1 = box
        rgb = colour(label)
        pen.rectangle((x0, y0, max(x0, x1), max(y0, y1)), outline=rgb, width=width)
        if texts is None:
            continue
        left, top, right, bottom = pen.textbbox((0, 0), texts[i], font=face)
        tw, th, pad = right - left, bottom - top, max(1, width // 2 + 1)
        tag_h = th + 2 * pad
        ty = y0 - tag_h if y0 - tag_h >= 0 else y0 + width  # above, else inside the top edge
        tx = min(max(0.0, x0), max(0.0, w - tw - 2 * pad))
        ty = min(max(0.0, ty), max(0.0, h - tag_h))
        pen.rectangle((tx, ty, tx + tw + 2 * pad, ty + tag_h), fill=rgb)
        pen.text((tx + pad - left, ty + pad - top), texts[i], fill=_text_colour(rgb), font=face)
    return torch.from_numpy(np.asarray(pic).copy()).permute(2, 0, 1)


def enlarge(
    image: torch.Tensor, boxes: torch.Tensor, short: int = READABLE_SHORT, long: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``image`` (uint8) resized for drawing, and ``boxes`` (xyxy pixels) scaled with it.

    A short side under ``short`` is enlarged to at least ``short``: by a whole factor with
    nearest-neighbour (each pixel a square, as the model saw it) from half of ``short``
    down, bilinearly in between; with ``long``, a larger long side is shrunk to ``long``
    (area averaging). Only the picture changes: detections stay in the image's own pixels.
    """
    h, w = image.shape[-2:]
    if min(h, w) < short:
        s = short / min(h, w)
        mode = "nearest" if s >= 2 else "bilinear"
        s = float(math.ceil(s)) if s >= 2 else s
    elif long is not None and max(h, w) > long:
        s, mode = long / max(h, w), "area"
    else:
        return image, boxes
    size = (max(1, round(h * s)), max(1, round(w * s)))
    kw = {"align_corners": False} if mode == "bilinear" else {}
    out = torch.nn.functional.interpolate(image[None].float(), size=size, mode=mode, **kw)[0]
    scale = torch.tensor([size[1] / w, size[0] / h, size[1] / w, size[0] / h])
    return out.round().clamp(0, 255).to(torch.uint8), boxes.float() * scale


def picture(
    image: torch.Tensor, boxes: torch.Tensor, labels: Sequence[int], texts: Sequence[str]
) -> torch.Tensor:
    """An image (float [3, H, W] in [0, 1] or uint8) with its boxes, at a readable size."""
    image = image if image.dtype == torch.uint8 else to_uint8(image)
    big, scaled = enlarge(image, boxes)
    return draw(big, scaled, labels, texts)


def caption(text: str, width: int, size: int) -> torch.Tensor:
    """A white uint8 [3, h, width] strip with ``text`` on it (a grid's column title)."""
    from PIL import Image, ImageDraw

    face = font(size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).textbbox(
        (0, 0), text, font=face
    )
    pad = max(2, size // 3)
    strip = Image.new("RGB", (width, bottom - top + 2 * pad), (255, 255, 255))
    ImageDraw.Draw(strip).text((pad - left, pad - top), text, fill=(0, 0, 0), font=face)
    return torch.from_numpy(np.asarray(strip).copy()).permute(2, 0, 1)


def _tile(dataset, index: int, size: tuple[int, int]) -> torch.Tensor:
    image, target = dataset[index]
    image, boxes = enlarge(to_uint8(image), target["boxes"], *size)
    names = dataset.category_names
    labels = target["labels"].tolist()
    return draw(image, boxes, labels, [names[k - 1] for k in labels])


def _titled(tile: torch.Tensor, text: str) -> torch.Tensor:
    """``tile`` under a caption that says which boxes it shows."""
    return torch.cat([caption(text, tile.shape[2], font_size(tile)), tile], dim=1)


def pick(n_images: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``n_images`` (all of them if there are fewer)."""
    if n < 1:
        from huberkl.errors import InputError

        raise InputError(f"--n must be >= 1, got {n}")
    if n >= n_images:
        return list(range(n_images))
    return sorted({int(round(i)) for i in np.linspace(0, n_images - 1, n)})


def noisy_clean_pair(ann_file: str | Path) -> Path | None:
    """The clean annotations beside a noisy synthetic train file: same images, other boxes."""
    import json

    ann_file = Path(ann_file)
    clean = ann_file.with_name(CLEAN_TRAIN_ANN)
    if not clean.is_file() or clean.resolve() == ann_file.resolve():
        return None
    with open(ann_file, encoding="utf-8") as fh:
        given = json.load(fh)
    with open(clean, encoding="utf-8") as fh:
        other = json.load(fh)
    same_images = {i["id"]: i["file_name"] for i in given["images"]} == {
        i["id"]: i["file_name"] for i in other["images"]
    }
    noisy = {a["id"]: a["bbox"] for a in given["annotations"]}
    exact = {a["id"]: a["bbox"] for a in other["annotations"]}
    if not same_images:  # e.g. the val split, beside the train split's clean file
        return None
    return clean if noisy != exact else None


def show_split(
    image_dir: str | Path,
    ann_file: str | Path,
    out_path: str | Path,
    n: int = 16,
    min_size: float = 1.0,
    tile: tuple[int, int] = (READABLE_SHORT, 768),
) -> dict[str, Any]:
    """Draw ``n`` images of a split with their boxes into one PNG grid at ``out_path``.

    Each image is drawn with its short side at least ``tile[0]`` and its long side at most
    ``tile[1]`` px (:func:`enlarge`). Where the split has clean annotations that differ (a
    noisy synthetic train split), each tile is the image with its noisy (training) boxes
    beside the same image with the clean ones, each half under a caption that says which.
    Returns ``{"path", "images", "paired", "clean_ann"}``.
    """
    from PIL import Image
    from torchvision.utils import make_grid

    from huberkl.detect.data.datasets import CocoDetection

    noisy = CocoDetection(image_dir, ann_file, train=False, min_size=min_size)
    clean_ann = noisy_clean_pair(ann_file)
    clean = CocoDetection(image_dir, clean_ann, min_size=min_size) if clean_ann else None
    tiles = []
    chosen = pick(len(noisy), n)
    for i in chosen:
        t = _tile(noisy, i, tile)
        if clean is not None:
            j = clean.ids.index(noisy.ids[i])
            right = _titled(_tile(clean, j, tile), CLEAN_CAPTION)
            t = _titled(t, NOISY_CAPTION)
            height = max(t.shape[1], right.shape[1])
            t, right = (
                torch.nn.functional.pad(x, (0, 0, 0, height - x.shape[1]), value=255)
                for x in (t, right)
            )
            gap = torch.full((3, height, 6), 255, dtype=torch.uint8)
            t = torch.cat([t, gap, right], dim=2)
        tiles.append(t)
    h = max(t.shape[1] for t in tiles)
    w = max(t.shape[2] for t in tiles)
    padded = [
        torch.nn.functional.pad(t, (0, w - t.shape[2], 0, h - t.shape[1]), value=255) for t in tiles
    ]
    per_row = max(1, math.ceil(math.sqrt(len(padded) * (0.5 if clean is not None else 1.0))))
    grid = make_grid(torch.stack(padded), nrow=per_row, padding=16, pad_value=255)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(out_path)
    return {
        "path": out_path,
        "images": len(chosen),
        "paired": clean is not None,
        "clean_ann": clean_ann,
    }


__all__ = [
    "CLASS_AP_CSV",
    "PR_PNG",
    "READABLE_SHORT",
    "class_ap",
    "colour",
    "draw",
    "enlarge",
    "pick",
    "picture",
    "pr_figure",
    "rich_class_table",
    "show_split",
    "write_class_csv",
    "write_class_report",
]
