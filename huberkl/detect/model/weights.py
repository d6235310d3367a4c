"""Weights by torchvision name (``DEFAULT``, ``IMAGENET1K_V1``, ``COCO_V1``) or local path.

A name resolves through torchvision's weights API (``get_model_weights``) to a file in the
hub cache, ``torch.hub.get_dir()/checkpoints/`` (``$TORCH_HOME/hub/checkpoints``), named as
the last part of ``weights.url``. Nothing is ever downloaded: a name whose file is not in
the cache is an InputError naming the file and the folder to put it in, raised before
torchvision could reach for the network.

- ``detect.model.backbone_weights``: a classification state dict for the backbone
  (ImageNet weights of ResNet-18/34/50, MobileNetV3-Large, VGG-16).
- ``detect.model.weights``: the whole detector, where torchvision has one: Faster R-CNN
  ResNet-50 FPN, Faster R-CNN MobileNetV3-Large FPN, RetinaNet ResNet-50 FPN. The
  class-dependent output layers are kept at their initialisation when the class count
  differs from the file's (fine-tuning on another dataset); any other mismatch is an error.

A local path is read by :func:`read_state_dict` and loaded by :func:`load_into` (a
mismatch names the file): every state-dict file the detectors read goes through here
(:mod:`.backbones` and :mod:`.detectors` import them; this module imports neither).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import get_model_weights

from huberkl.errors import InputError

log = logging.getLogger(__name__)

# Our backbone names -> torchvision's classification model names.
BACKBONE_MODELS = {
    "resnet18": "resnet18",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "mobilenet_v3": "mobilenet_v3_large",
    "vgg16": "vgg16",
}
# (arch, backbone) -> torchvision's detector builder with whole-model weights.
DETECTOR_MODELS = {
    ("faster_rcnn", "resnet50"): "fasterrcnn_resnet50_fpn",
    ("faster_rcnn", "mobilenet_v3"): "fasterrcnn_mobilenet_v3_large_fpn",
    ("retinanet", "resnet50"): "retinanet_resnet50_fpn",
}
# Layers whose shapes follow the number of classes (reinitialised when it differs).
CLASS_LAYERS = (
    "roi_heads.box_predictor.cls_score.",
    "roi_heads.box_predictor.bbox_pred.",
    "head.classification_head.cls_logits.",
)
# BatchNorm's step counter: absent under FrozenBatchNorm2d, so never a mismatch either way.
BN_COUNTER = "num_batches_tracked"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")
_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".tar"}


def read_state_dict(path: str | Path, what: str = "weights") -> dict[str, Tensor]:
    """A tensor state dict from a local file (a bare dict, or a checkpoint with ``model``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{what} file {str(p)!r} does not exist")
    try:
        data = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(
            f"{what} file {str(p)!r} is not a readable torch state dict ({type(exc).__name__})"
        ) from None
    if isinstance(data, dict):
        for key in ("model", "state_dict"):
            if isinstance(data.get(key), dict):
                data = data[key]
                break
    if (
        not isinstance(data, dict)
        or not data
        or not all(isinstance(v, Tensor) for v in data.values())
    ):
        raise InputError(f"{what} file {str(p)!r} does not hold a state dict of tensors")
    return data


def load_into(
    module: nn.Module,
    path: str | Path,
    what: str,
    prefix: str = "",
    state: dict[str, Tensor] | None = None,
) -> None:
    """Load a local state dict into ``module``; any key or shape mismatch names the file.

    With ``prefix``, only the file's keys under it are used (e.g. ``features.`` of a VGG).
    ``state``: already loaded from ``path`` (torchvision weights by name, :func:`backbone_state`).
    """
    if state is None:
        state = read_state_dict(path, what)
    if prefix:
        state = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    own = module.state_dict()
    # BatchNorm's step counter is absent under FrozenBatchNorm2d: no mismatch either way.
    missing = [k for k in own if k not in state and not k.endswith(BN_COUNTER)]
    unexpected = [k for k in state if k not in own and not k.endswith(BN_COUNTER)]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (e.g. {prefix}{missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {prefix}{unexpected[0]})")
        if shapes:
            k = shapes[0]
            parts.append(
                f"{len(shapes)} shape mismatch(es) "
                f"(e.g. {prefix}{k}: file {list(state[k].shape)}, model {list(own[k].shape)})"
            )
        raise InputError(
            f"{what} file {str(path)!r} does not match this {type(module).__name__}: "
            + "; ".join(parts)
        )
    module.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)


def is_path(spec: str | Path) -> bool:
    """A local file path rather than a torchvision weights name.

    Names are identifiers (``DEFAULT``, ``IMAGENET1K_V1``, ``ResNet50_Weights.COCO_V1``);
    anything with a folder separator or a file suffix such as ``.pth``, or an existing
    file, is a path.
    """
    s = str(spec)
    if isinstance(spec, Path) or Path(s).exists() or not _NAME.fullmatch(s):
        return True
    return Path(s).suffix.lower() in _SUFFIXES


def hub_dir() -> Path:
    """The folder torchvision caches weights in: ``torch.hub.get_dir()/checkpoints``."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def lookup(model_name: str, name: str):
    """The torchvision ``WeightsEnum`` member ``name`` of ``model_name`` (``DEFAULT`` allowed).

    ``name`` may also be qualified, e.g. ``ResNet50_Weights.IMAGENET1K_V2``.
    """
    enum = get_model_weights(model_name)
    short = name.split(".", 1)[1] if name.startswith(enum.__name__ + ".") else name
    allowed = ["DEFAULT", *(w.name for w in enum)]
    if short not in allowed:
        raise InputError(
            f"{name!r} is not a torchvision weights name for {model_name}; allowed: "
            f"{', '.join(allowed)} (or a local file path)"
        )
    return enum.DEFAULT if short == "DEFAULT" else enum[short]


def cached_file(weights) -> Path:
    """Where torchvision's hub cache keeps ``weights`` (the last part of its URL)."""
    return hub_dir() / weights.url.rsplit("/", 1)[-1]


def state_dict_by_name(model_name: str, name: str, what: str) -> dict[str, Tensor]:
    """Load the cached file of torchvision weights ``name``; no file: InputError, no download."""
    weights = lookup(model_name, name)
    path = cached_file(weights)
    if not path.is_file():
        raise InputError(
            f"{what} {name} ({weights}) needs {path.name} in {path.parent} "
            f"(not downloaded: copy it there, or set TORCH_HOME to a folder whose "
            f"hub/checkpoints holds it)"
        )
    try:
        # The file exists, so torchvision's loader reads it from the cache and downloads nothing.
        state = weights.get_state_dict(progress=False, check_hash=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise InputError(
            f"{what} file {str(path)!r} is not a readable torch state dict ({type(exc).__name__})"
        ) from None
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise InputError(f"{what} file {str(path)!r} does not hold a state dict of tensors")
    return state  # type: ignore[return-value]


def backbone_state(backbone: str, spec: str | Path) -> dict[str, Tensor] | None:
    """Torchvision classification weights named ``spec`` for ``backbone``; None for a path.

    (A path is read, and checked against the backbone, by :func:`load_into`.)
    """
    if is_path(spec):
        return None
    if backbone not in BACKBONE_MODELS:
        raise InputError(
            f"backbone {backbone!r} has no torchvision weights; named weights exist for "
            f"{', '.join(BACKBONE_MODELS)} (or give a local file path)"
        )
    return state_dict_by_name(BACKBONE_MODELS[backbone], str(spec), f"{backbone} backbone weights")


def load_model_weights(model: nn.Module, arch: str, backbone: str, spec: str | Path) -> None:
    """``detect.model.weights``: a local file (strict) or torchvision detector weights by name."""
    if is_path(spec):
        load_into(model, spec, "weights")
        return
    model_name = DETECTOR_MODELS.get((arch, backbone))
    if model_name is None:
        have = ", ".join(f"{a}/{b}" for a, b in DETECTOR_MODELS)
        raise InputError(
            f"torchvision has no whole-detector weights for {arch}/{backbone} (it has: {have}); "
            "give a local file path or use detect.model.backbone_weights"
        )
    state = state_dict_by_name(model_name, str(spec), "weights")
    load_detector(model, state, f"{spec} ({cached_file(lookup(model_name, str(spec))).name})")


def load_detector(model: nn.Module, state: Mapping[str, Tensor], source: str) -> list[str]:
    """Load a whole-detector state dict; returns the class-dependent keys left initialised.

    Goes through ``load_state_dict`` so that torchvision's key upgrades of older files
    (e.g. the RPN head's ``conv.weight`` -> ``conv.0.0.weight``) apply.
    """
    own = model.state_dict()
    kept = type(state)() if isinstance(state, dict) else {}
    skipped = []
    for k, v in state.items():
        if k.startswith(CLASS_LAYERS) and k in own and tuple(own[k].shape) != tuple(v.shape):
            skipped.append(k)
            continue
        kept[k] = v
    meta = getattr(state, "_metadata", None)
    if meta is not None:
        kept._metadata = meta  # type: ignore[attr-defined]
    try:
        result = model.load_state_dict(kept, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0]
        raise InputError(f"weights {source} do not fit this model: {detail}") from None
    missing = [k for k in result.missing_keys if not k.endswith(BN_COUNTER) and k not in skipped]
    unexpected = [k for k in result.unexpected_keys if not k.endswith(BN_COUNTER)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) (e.g. {unexpected[0]})")
        raise InputError(f"weights {source} do not fit this model: " + "; ".join(parts))
    if skipped:
        log.warning(
            "weights %s: %d class-dependent tensors of another class count left initialised (%s)",
            source,
            len(skipped),
            ", ".join(skipped),
        )
    return skipped


__all__ = [
    "BACKBONE_MODELS",
    "BN_COUNTER",
    "DETECTOR_MODELS",
    "backbone_state",
    "cached_file",
    "hub_dir",
    "is_path",
    "load_detector",
    "load_into",
    "load_model_weights",
    "lookup",
    "read_state_dict",
    "state_dict_by_name",
]
