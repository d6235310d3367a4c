"""Run a trained checkpoint on images or folders: COCO results rows and pictures with boxes.

:func:`load_run` rebuilds the model a checkpoint was trained with from the config stored
in it (weights by name or path are not needed: the checkpoint holds every tensor) and
checks the architecture as ``detect evaluate`` does
(:func:`huberkl.detect.training.checkpoint.build_from_checkpoint`). Hydra overrides change
that config as they do for ``detect evaluate``
(:func:`huberkl.detect.training.runs.checkpoint_config`), limited to what prediction
reads (:func:`check_overrides`): ``detect.model.*`` (e.g. its
``score_thresh`` or ``min_size``; a change of architecture is refused), ``detect.device``
and ``data.*`` (where older checkpoints find their class names).
:func:`predict_images` runs it: ``detections.json`` holds COCO results rows
(``image_id`` where ``ann`` lists the image, else ``file_name``; ``bbox`` as
``[x, y, w, h]`` pixels of the image as read), and each image is drawn with its boxes, class
names and scores at a readable size (:func:`.pictures.picture`). An unreadable image is an
InputError, or, with ``on_unreadable``, reported and skipped while the rest are predicted.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from torchvision.ops import box_convert

from huberkl.detect.evaluation.coco_eval import DETECTIONS
from huberkl.detect.files import write_json
from huberkl.detect.training import checkpoint as ckpt
from huberkl.errors import InputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DRAWN = "images"


@dataclass
class Run:
    """A trained detector ready to predict: model (eval mode), categories in label order."""

    model: nn.Module
    categories: list[dict[str, Any]]  # label k (1..C) is categories[k - 1]
    config: dict[str, Any]
    checkpoint: Path
    device: torch.device

    @property
    def names(self) -> list[str]:
        return [str(c.get("name", c["id"])) for c in self.categories]


def _device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise InputError(f"--device must be auto, cpu or cuda[:N], got {device!r}") from None


def _categories(state: dict[str, Any], config: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """Stored categories; for older checkpoints, those of the run's train annotations if
    readable, else ids 1..C named by number."""
    cats = state.get("categories")
    if not cats:
        ann = Path(str(config.get("data", {}).get("train_ann", "")))
        if ann.is_file():
            with open(ann, encoding="utf-8") as fh:
                cats = json.load(fh).get("categories")
    if not cats or len(cats) != n:
        cats = [{"id": k, "name": str(k)} for k in range(1, n + 1)]
    return sorted((dict(c) for c in cats), key=lambda c: c["id"])


# What prediction reads of a run's config: overrides of anything else are refused.
PREDICT_OVERRIDES = ("detect.model", "detect.device", "data")


def check_overrides(overrides: Sequence[str]) -> list[str]:
    """The keys (or groups) ``overrides`` set, after refusing those prediction does not read.

    ``params`` is refused on its own terms: its box coder decodes the trained regression
    outputs, so another preset would read them in other units.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as exc:
        raise InputError(f"bad override: {str(exc).strip().splitlines()[0]}") from None
    keys = []
    for o in parsed:
        key = o.key_or_group.replace("/", ".")
        if key == "params" or key.startswith("params."):
            raise InputError(
                f"{o.input_line}: predict keeps the checkpoint's params (its box coder decodes "
                "the trained outputs)"
            )
        if key != "detect" and not any(
            key == p or key.startswith(p + ".") for p in PREDICT_OVERRIDES
        ):
            raise InputError(
                f"{o.input_line}: not read by predict; it takes detect.model.*, detect.device "
                "and data.* overrides (e.g. detect.model.score_thresh=0.3 detect.device=cpu)"
            )
        keys.append(key)
    return keys


def run_config(state: dict[str, Any], overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The checkpoint's resolved config with ``overrides`` on top (as ``detect evaluate``),
    after :func:`check_overrides`."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from huberkl import schema
    from huberkl.detect.training import runs

    check_overrides(overrides)
    if not overrides:
        return state.get("config")  # type: ignore[return-value]
    cfg = runs.checkpoint_config(state, overrides)
    try:
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except OmegaConfBaseException as exc:
        raise InputError(schema.describe(exc, overrides)) from None


def load_run(
    checkpoint: str | Path, device: str | torch.device = "auto", overrides: Sequence[str] = ()
) -> Run:
    """The model of a huberkl ``checkpoint.pt`` (or its run folder), in eval mode on ``device``.

    ``overrides`` (Hydra ``key=value``) change the stored config first; ``detect.device``
    among them picks the device where ``device`` is ``auto``.
    """
    from huberkl.params import Preset

    path = Path(checkpoint)
    keys = check_overrides(overrides)  # before the checkpoint is read: cheap errors first
    state = ckpt.read_checkpoint(path)
    stored = state.get("config")
    if not isinstance(stored, dict) or not isinstance(stored.get("detect"), dict):
        raise InputError(f"checkpoint {path} is not a huberkl detect checkpoint (no run config)")
    config = run_config(state, overrides)
    if any(k in ("detect", "detect.device") for k in keys):
        wanted = str(config["detect"].get("device", "auto"))
        if str(device) != "auto" and wanted not in ("auto", str(device)):
            raise InputError(f"--device {device} and detect.device={wanted}: give one of them")
        device = device if str(device) != "auto" else wanted
    num_classes = int(state["arch"]["num_classes"])
    params = Preset.from_mapping(config["params"])
    model = ckpt.build_from_checkpoint(config["detect"]["model"], params, num_classes, state, path)
    dev = _device(device)
    model.to(dev).eval()
    return Run(model, _categories(state, config, num_classes), config, path, dev)


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """JPEG/PNG files given directly or found (recursively, sorted) in given folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
            if not inside:
                raise InputError(f"{p}: no JPEG or PNG images in this folder")
            found += inside
        elif p.is_file():
            if p.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(
                    f"{p}: not a JPEG or PNG file (allowed: {', '.join(IMAGE_SUFFIXES)})"
                )
            found.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not found:
        raise InputError("no images given")
    return found


def read_image(path: Path) -> torch.Tensor:
    """[3, H, W] float in [0, 1], read as the training data loader reads images."""
    try:
        with Image.open(path) as im:
            arr = np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{path}: cannot read image ({exc.__class__.__name__})") from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def image_ids(ann_file: str | Path | None) -> dict[str, int]:
    """File name -> COCO image id of a COCO instances file (empty without one)."""
    if ann_file is None:
        return {}
    from huberkl.detect.data.datasets import _load_json

    data = _load_json(Path(ann_file))
    return {Path(img["file_name"]).name: int(img["id"]) for img in data["images"]}


def _out_name(path: Path, used: set[str]) -> str:
    name, k = path.name, 2
    while name in used:
        name, k = f"{path.stem}-{k}{path.suffix}", k + 1
    used.add(name)
    return name


@torch.inference_mode()
def predict_images(
    run: Run,
    paths: Sequence[str | Path],
    out_dir: str | Path | None = None,
    score: float = 0.5,
    ann_file: str | Path | None = None,
    batch_size: int = 4,
    on_unreadable: Callable[[Path, str], None] | None = None,
) -> list[dict[str, Any]]:
    """Detections with score >= ``score`` on every image; with ``out_dir``, write
    ``detections.json`` and ``images/<file>`` drawn with boxes, names and scores.

    An image that cannot be read raises the InputError, or, with ``on_unreadable``, is
    passed to it with the one-line message and skipped: one bad file in a folder of
    photos then costs that file, not the batch.
    """
    from huberkl.detect.evaluation.pictures import picture

    if not 0.0 <= score <= 1.0:
        raise InputError(f"--score must be in [0, 1], got {score}")
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}")
    files = find_images(paths)
    ids = image_ids(ann_file)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        (out / DRAWN).mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    used: set[str] = set()
    for start in range(0, len(files), batch_size):
        batch, images = [], []
        for f in files[start : start + batch_size]:
            try:
                images.append(read_image(f))
            except InputError as exc:
                if on_unreadable is None:
                    raise
                on_unreadable(f, str(exc))
                continue
            batch.append(f)
        if not batch:
            continue
        outputs = run.model([im.to(run.device) for im in images])
        for f, image, det in zip(batch, images, outputs, strict=True):
            keep = det["scores"] >= score
            boxes = det["boxes"][keep].float().cpu()
            scores = det["scores"][keep].float().cpu().tolist()
            labels = det["labels"][keep].cpu().tolist()
            where = {"image_id": ids[f.name]} if f.name in ids else {"file_name": str(f)}
            for box, s, label in zip(
                box_convert(boxes, "xyxy", "xywh").tolist(), scores, labels, strict=True
            ):
                rows.append(
                    where
                    | {
                        "category_id": int(run.categories[label - 1]["id"]),
                        "bbox": [round(v, 3) for v in box],
                        "score": round(s, 5),
                    }
                )
            if out is not None:
                texts = [f"{run.names[k - 1]} {s:.2f}" for k, s in zip(labels, scores, strict=True)]
                drawn = picture(image, boxes, labels, texts)
                Image.fromarray(drawn.permute(1, 2, 0).numpy()).save(
                    out / DRAWN / _out_name(f, used)
                )
    if out is not None:
        write_json(out / DETECTIONS, rows)
    return rows


__all__ = [
    "DETECTIONS",
    "IMAGE_SUFFIXES",
    "Run",
    "check_overrides",
    "find_images",
    "load_run",
    "predict_images",
]
