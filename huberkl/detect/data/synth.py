"""A synthetic COCO-format shapes set with exact boxes and known annotation noise.

Why: the paper's detector experiments (Section 7) vary only the box-loss settings and read
them as label-noise scales; with synthetic data the clean boxes are exact, the injected
noise is known, and a tiny detector learns the task on a CPU in minutes.

Each image has a textured, low-saturation background and 1-6 shapes of five classes
(rectangle, ellipse, triangle, cross, star), each class with its own hue band, of sizes
~12-60 px at 128 px (scaled with the image size). Shapes may overlap, but every shape keeps
at least 60 % of its pixels visible; its box is the exact extent of its visible pixels
(pixel-edge coordinates, so a 1-pixel shape at column 5 has x=5, w=1). Everything is drawn
without anti-aliasing and seeded per image, so the same arguments give bit-identical files.

Layout (COCO)::

    DIR/images/train/000001.png ...      DIR/images/val/000001.png ...
    DIR/annotations/instances_train.json  (noisy boxes when noise != "none")
    DIR/annotations/instances_train_clean.json
    DIR/annotations/instances_val.json    (always clean)

The set is drawn in a hidden folder beside DIR and moved into place once complete, so an
interrupted run never leaves a partial set in DIR (:func:`synthesize`).
"""

from __future__ import annotations

import colorsys
import glob
import math
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from huberkl.detect.files import write_json
from huberkl.distributions import sample
from huberkl.errors import InputError
from huberkl.schema import SynthSchema

CLASSES = ("rectangle", "ellipse", "triangle", "cross", "star")
# HSV hue centre per class (red, yellow, green, blue, magenta): a colour cue beside the shape.
HUES = (0.0, 0.15, 0.35, 0.6, 0.82)
HUE_JITTER = 0.035
# A target draw whose noisy width or height is not a positive finite double is redrawn; with
# |log factor| < this bound every w·exp(e) is one (exp(±700) is within float64's range).
MAX_LOG_FACTOR = 700.0
MIN_VISIBLE = 0.6  # an occluded shape keeps at least this fraction of its pixels
MAX_OBJECTS = 6
_SPLIT_KEY = {"train": 0, "val": 1}
_NOISE_KEY = 2


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def _background(rng: np.random.Generator, size: int, texture: bool) -> np.ndarray:
    """A low-saturation, mid-dark background, (H, W, 3) float in [0, 1]."""
    base = _hsv(rng.random(), rng.uniform(0.0, 0.35), rng.uniform(0.15, 0.5))
    img = np.broadcast_to(base, (size, size, 3)).copy()
    if not texture:
        return np.zeros_like(img)
    # Low-frequency blotches: a coarse random grid upsampled bicubically.
    grid = int(rng.choice([4, 8, 16]))
    coarse = rng.standard_normal((grid, grid)).astype(np.float32)
    blotch = np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BICUBIC))
    lum = rng.uniform(0.05, 0.15) * blotch
    if rng.random() < 0.4:  # stripes at a random angle
        theta, period = rng.uniform(0, math.pi), rng.uniform(4, 16)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        phase = (xx * math.cos(theta) + yy * math.sin(theta)) * (2 * math.pi / period)
        lum = lum + rng.uniform(0.04, 0.1) * np.sin(phase)
    img = img + lum[..., None] + 0.02 * rng.standard_normal((size, size, 3), dtype=np.float32)
    return img


def _shape_mask(rng: np.random.Generator, cls: int, size: int, lo: float, hi: float) -> np.ndarray:
    """The pixels of one shape of class ``cls`` at a random place, (H, W) bool."""
    side = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    aspect = rng.uniform(0.6, 1.6) if cls in (0, 1) else rng.uniform(0.8, 1.25)
    w = int(np.clip(round(side * math.sqrt(aspect)), 4, size - 1))
    h = int(np.clip(round(side / math.sqrt(aspect)), 4, size - 1))
    x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
    x1, y1 = x0 + w - 1, y0 + h - 1  # inclusive corners, as PIL draws them
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    name = CLASSES[cls]
    if name == "rectangle":
        draw.rectangle([x0, y0, x1, y1], fill=1)
    elif name == "ellipse":
        draw.ellipse([x0, y0, x1, y1], fill=1)
    elif name == "triangle":
        t = rng.uniform(0.2, 0.8)
        pts = [(t, 0.0), (0.0, 1.0), (1.0, 1.0)]  # apex up, in box units
        k = int(rng.integers(4))  # rotate by k quarter turns
        for _ in range(k):
            pts = [(1.0 - v, u) for u, v in pts]
        draw.polygon([(x0 + u * (w - 1), y0 + v * (h - 1)) for u, v in pts], fill=1)
    elif name == "cross":
        f = rng.uniform(0.28, 0.42)
        tw, th = max(2, round(f * w)), max(2, round(f * h))
        cx, cy = x0 + (w - tw) // 2, y0 + (h - th) // 2
        draw.rectangle([x0, cy, x1, cy + th - 1], fill=1)
        draw.rectangle([cx, y0, cx + tw - 1, y1], fill=1)
    else:  # star: five points, random rotation, inscribed in the box
        rot = rng.uniform(0, 2 * math.pi / 5)
        cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, (w - 1) / 2, (h - 1) / 2
        pts = []
        for i in range(10):
            r = 1.0 if i % 2 == 0 else 0.45
            a = rot + i * math.pi / 5
            pts.append((cx + r * rx * math.sin(a), cy - r * ry * math.cos(a)))
        draw.polygon(pts, fill=1)
    return np.asarray(canvas, dtype=bool)


def render_image(
    rng: np.random.Generator, size: int, texture: bool = True, n_objects: int | None = None
) -> tuple[np.ndarray, list[dict]]:
    """Draw one image: returns ``(rgb uint8 (H, W, 3), objects)``.

    Each object is ``{"label": 0..4, "bbox": [x, y, w, h], "area": visible pixels, "mask":
    visible (H, W) bool}``; ``bbox`` is the exact extent of the visible pixels.
    ``texture=False`` draws on pure black (for tests that read boxes back from pixels).
    """
    lo, hi = size * 12 / 128, size * 60 / 128
    img = _background(rng, size, texture)
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if n_objects is None else n_objects
    owner = np.zeros((size, size), dtype=np.int16)  # 0 = background, k + 1 = object k
    full_area: list[int] = []
    labels: list[int] = []
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for _ in range(n):
        cls = int(rng.integers(len(CLASSES)))
        colour = _hsv(
            HUES[cls] + rng.uniform(-HUE_JITTER, HUE_JITTER),
            rng.uniform(0.55, 1.0),
            rng.uniform(0.65, 1.0),
        )
        for _try in range(30):
            mask = _shape_mask(rng, cls, size, lo, hi)
            k = len(labels) + 1
            trial = np.where(mask, np.int16(k), owner)
            visible = np.bincount(trial.ravel(), minlength=k + 1)[1:k]
            if all(v >= MIN_VISIBLE * a for v, a in zip(visible, full_area, strict=True)):
                break
        else:
            continue  # no room for this shape
        owner = trial
        full_area.append(int(mask.sum()))
        labels.append(cls)
        # Fill: the colour with a gentle linear shading and fine grain, so shapes look real.
        g = rng.uniform(-0.12, 0.12, size=2).astype(np.float32)
        shade = 1.0 + (g[0] * (xx - xx[mask].mean()) + g[1] * (yy - yy[mask].mean())) / size
        grain = 1.0 + 0.05 * rng.standard_normal((size, size), dtype=np.float32)
        fill = colour[None, None, :] * (shade * grain)[..., None]
        img[mask] = fill[mask]
    rgb = (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    objects = []
    for k, cls in enumerate(labels, start=1):
        vis = owner == k
        cols, rows = np.flatnonzero(vis.any(axis=0)), np.flatnonzero(vis.any(axis=1))
        x, y = int(cols[0]), int(rows[0])
        w, h = int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y
        objects.append({"label": cls, "bbox": [x, y, w, h], "area": int(vis.sum()), "mask": vis})
    return rgb, objects


def perturb_boxes(
    boxes: np.ndarray,
    noise: str,
    scale: float,
    rng: np.random.Generator,
    width: float,
    height: float,
) -> np.ndarray:
    """Move each edge of ``boxes`` (N, 4) xywh independently by noise, clipped to the image.

    x edges move by ``scale * w * e`` and y edges by ``scale * h * e`` with ``e`` standard
    Laplace (density exp(-|e|)/2, so E|move| = scale * w) or standard normal (std of the
    move = scale * w). Section 6 reads a box loss as Laplace label noise whose scale grows
    with the box (α·σ·w_a, Eq. 26 and 32); this injects such noise, known exactly, so
    that a loss setting's implied scale can be compared with the true one. Crossed edges
    are swapped.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if noise == "none" or scale == 0 or len(boxes) == 0:
        return boxes.copy()
    draw = rng.laplace if noise == "laplace" else rng.normal
    e = draw(0.0, 1.0, size=(len(boxes), 4))
    x, y, w, h = boxes.T
    x0 = np.clip(x + scale * w * e[:, 0], 0, width)
    x1 = np.clip(x + w + scale * w * e[:, 2], 0, width)
    y0 = np.clip(y + scale * h * e[:, 1], 0, height)
    y1 = np.clip(y + h + scale * h * e[:, 3], 0, height)
    x0, x1 = np.minimum(x0, x1), np.maximum(x0, x1)
    y0, y1 = np.minimum(y0, y1), np.maximum(y0, y1)
    return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)


def perturb_targets(
    boxes: np.ndarray,
    family: str,
    scales: tuple[float, float, float, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, int]:
    """Perturb each box's (x_c, y_c, log w, log h) by independent noise of ``family``.

    ``x_c += s_x·w·e_x``, ``y_c += s_y·h·e_y``, ``w *= exp(s_w·e_w)``, ``h *= exp(s_h·e_h)``:
    the error of the noisy box coded against the clean one (docs/NOISE.md, "Target
    parametrisation") is exactly ``s·e``. Nothing is clipped (a box may extend past the
    image). The only rejection: a box whose ``s_w·e_w`` or ``s_h·e_h`` reaches
    :data:`MAX_LOG_FACTOR` in magnitude (its size would not be a positive finite double)
    gets its four draws redrawn; returns ``(boxes, number of boxes redrawn)``.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scales, dtype=np.float64)
    e = sample(family, 1.0, (len(boxes), 4), rng) * s
    redrawn = 0
    while True:
        bad = np.flatnonzero(np.abs(e[:, 2:]).max(axis=1) >= MAX_LOG_FACTOR) if len(e) else []
        if len(bad) == 0:
            break
        redrawn += len(bad)
        e[bad] = sample(family, 1.0, (len(bad), 4), rng) * s
    x, y, w, h = boxes.T
    nw, nh = w * np.exp(e[:, 2]), h * np.exp(e[:, 3])
    cx, cy = x + 0.5 * w + w * e[:, 0], y + 0.5 * h + h * e[:, 1]
    return np.stack([cx - 0.5 * nw, cy - 0.5 * nh, nw, nh], axis=1), redrawn


def _coco(info: dict, images: list[dict], anns: list[dict]) -> dict:
    cats = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    return {"info": info, "images": images, "annotations": anns, "categories": cats}


def layout(out_dir: str | Path) -> dict[str, Path]:
    """The paths of a synthetic set under ``out_dir`` (what :func:`synthesize` returns)."""
    root = Path(out_dir)
    return {
        "root": root,
        "train_images": root / "images" / "train",
        "val_images": root / "images" / "val",
        "train_ann": root / "annotations" / "instances_train.json",
        "val_ann": root / "annotations" / "instances_val.json",
        "train_clean_ann": root / "annotations" / "instances_train_clean.json",
    }


def _write_ann(path: Path, obj: dict) -> None:
    write_json(path, obj, separators=(",", ":"))  # never a half-written annotation file


def synthesize(
    out_dir: str | Path,
    settings: SynthSchema | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Path]:
    """Write the synthetic set of ``settings`` (the ``data.synth`` section, checked when the
    :class:`~huberkl.schema.SynthSchema` was made; its defaults if None) to ``out_dir``.

    Returns its paths, keys ``root, train_images, val_images, train_ann, val_ann,
    train_clean_ann``. Images depend only on ``(seed, split, index)`` and the noise on
    ``seed``, so the same settings give bit-identical files and changing ``noise`` keeps
    the same images. ``progress(n)`` is called after every ``n`` images written. ``copies``
    > 1 also writes ``instances_train_copy<k>.json`` for k = 2..copies: independent noisy
    annotations of the same train images (copy 1 is ``instances_train.json``).
    """
    s = settings if settings is not None else SynthSchema()
    root = Path(out_dir)
    tmp = _temp_beside(root)
    try:
        _write_set(tmp, s, progress)
        _move_into_place(tmp, root)
    finally:
        if tmp.exists():  # interrupted or failed: the half-written set goes
            shutil.rmtree(tmp, ignore_errors=True)
    paths = layout(out_dir)
    for k in range(2, s.copies + 1):
        paths[f"train_ann_copy{k}"] = copy_path(paths, k)
    return paths


# A set is written to ``.<name>.synth-<pid>-<random>`` beside its folder, then moved into
# place: an interrupted run (Ctrl-C, a kill, a full disk) never leaves images without
# annotations where a set is looked for, nor mixes its images with an older set's.
_TEMP = ".{name}.synth-"


def _temp_beside(root: Path) -> Path:
    """A new empty folder beside ``root`` (same file system, so the move is a rename)."""
    where = root.absolute()
    prefix = _TEMP.format(name=where.name)
    try:
        where.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(where)
        while True:
            tmp = where.parent / f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
            try:
                tmp.mkdir()  # not mkdtemp: the set keeps the usual permissions (umask)
                return tmp
            except FileExistsError:
                continue
    except OSError as exc:
        raise InputError(f"{root}: cannot write a set there ({exc.strerror or exc})") from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def _remove_stale(where: Path) -> None:
    """Remove the temporary folders that killed runs into ``where`` left beside it."""
    prefix = _TEMP.format(name=where.name)
    for old in where.parent.glob(f"{glob.escape(prefix)}*"):
        pid = old.name[len(prefix) :].split("-", 1)[0]
        if old.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _move_into_place(tmp: Path, root: Path) -> None:
    """Make the complete set in ``tmp`` the set in ``root``.

    A missing ``root`` is made by one rename. An existing folder (perhaps the working
    directory, which must stay where it is) gets the set's two folders and keeps its other
    files (a reproduction step's ``stdout.txt``); an old set replaced with ``--force`` loses
    its ``annotations`` first and the new ones come last, so that at no moment does the
    folder hold annotations beside images of another set.
    """
    if not (root.exists() or root.is_symlink()):
        os.rename(tmp, root)
        return
    _remove(root / "annotations")
    for name in ("images", "annotations"):  # the annotations last
        _remove(root / name)
        os.rename(tmp / name, root / name)
    tmp.rmdir()


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write_set(out_dir: Path, s: SynthSchema, progress: Callable[[int], None] | None) -> None:
    """Draw the images and write the annotations of the set ``s`` into ``out_dir``."""
    images, size, seed, val_images = s.images, s.size, s.seed, s.val_images
    paths = layout(out_dir)
    for key in ("train_images", "val_images"):
        paths[key].mkdir(parents=True, exist_ok=True)
    paths["train_ann"].parent.mkdir(parents=True, exist_ok=True)
    info = {
        "description": "huberkl synthetic shapes",
        "size": size,
        "seed": seed,
        "images": images,
        "val_images": val_images,
    }
    split_records: dict[str, tuple[list[dict], list[dict]]] = {}
    for split, count in (("train", images), ("val", val_images)):
        img_rows, anns = [], []
        for i in range(1, count + 1):
            rng = np.random.default_rng(
                np.random.SeedSequence(seed, spawn_key=(_SPLIT_KEY[split], i))
            )
            rgb, objects = render_image(rng, size)
            name = f"{i:06d}.png"
            Image.fromarray(rgb).save(paths[f"{split}_images"] / name, compress_level=1)
            img_rows.append({"id": i, "file_name": name, "width": size, "height": size})
            for obj in objects:
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i,
                        "category_id": obj["label"] + 1,
                        "bbox": obj["bbox"],
                        "area": obj["area"],
                        "iscrowd": 0,
                    }
                )
            if progress is not None:
                progress(1)
        split_records[split] = (img_rows, anns)

    clean_info = {**info, "noise": "none", "noise_scale": 0.0}
    train_rows, train_anns = split_records["train"]
    _write_ann(paths["val_ann"], _coco({**clean_info, "split": "val"}, *split_records["val"]))
    _write_ann(
        paths["train_clean_ann"], _coco({**clean_info, "split": "train"}, train_rows, train_anns)
    )
    for k in range(1, s.copies + 1):
        noisy_anns, noisy_info = _noisy_copy(train_anns, s, k)
        path = paths["train_ann"] if k == 1 else copy_path(paths, k)
        _write_ann(path, _coco({**info, **noisy_info}, train_rows, noisy_anns))


def copy_path(paths: dict[str, Path], k: int) -> Path:
    """Where noisy copy ``k`` >= 2 of the train annotations is written."""
    return paths["train_ann"].with_name(f"instances_train_copy{k}.json")


def describe_noise(settings: SynthSchema) -> str:
    """One sentence that states the injected noise exactly (recorded in ``info``)."""
    noise, model, s = settings.noise, settings.noise_model, settings.scales
    if noise == "none" or max(s) == 0:
        return "none: the train boxes are the exact boxes"
    if model == "edges":
        return (
            f"edges: every box edge moves independently by {noise} noise of scale "
            f"{s[0]}·w (x edges) or {s[0]}·h (y edges); edges clipped to the image, crossed edges swapped"
        )
    return (
        f"targets: (x_c, y_c, log w, log h) of every box move by independent {noise} noise "
        f"(scipy.stats scale) {s[0]}·w, {s[1]}·h, {s[2]}, {s[3]}; no clipping (boxes may "
        f"extend past the image); a box whose |log w or log h move| >= {MAX_LOG_FACTOR:g} "
        "is redrawn (count in noise_redrawn)"
    )


def _noisy_copy(train_anns: list[dict], s: SynthSchema, k: int) -> tuple[list[dict], dict]:
    """Noisy copy ``k`` of the train annotations and the ``info`` keys that describe it."""
    noise, model, scales = s.noise, s.noise_model, s.scales
    active = noise != "none" and max(scales) > 0
    out = {
        "noise": noise,
        "noise_scale": s.noise_scale if noise != "none" else 0.0,
        "split": "train",
        "noise_model": model,
        "noise_family": noise,
        "noise_scales": dict(
            zip(("x", "y", "w", "h"), scales if active else [0.0] * 4, strict=True)
        ),
        "noise_description": describe_noise(s),
    }
    if s.copies > 1:
        out["copy"] = k
        out["copies"] = s.copies
    if not active:
        return train_anns, out
    key = (_NOISE_KEY,) if k == 1 else (_NOISE_KEY, k)  # copy 1 keeps the original stream
    rng = np.random.default_rng(np.random.SeedSequence(s.seed, spawn_key=key))
    boxes = np.array([a["bbox"] for a in train_anns], dtype=np.float64).reshape(-1, 4)
    size = s.size
    if model == "edges":
        moved = perturb_boxes(boxes, noise, s.noise_scale, rng, size, size)
        rows = [[round(float(v), 3) for v in box] for box in moved]
        anns = [
            {**a, "bbox": b, "area": round(b[2] * b[3], 3)}
            for a, b in zip(train_anns, rows, strict=True)
        ]
        return anns, out
    moved, redrawn = perturb_targets(boxes, noise, tuple(scales), rng)
    out["noise_redrawn"] = redrawn
    rows = [[float(v) for v in box] for box in moved]  # full precision: the noise is exact
    anns = [{**a, "bbox": b, "area": b[2] * b[3]} for a, b in zip(train_anns, rows, strict=True)]
    return anns, out
