"""Faster R-CNN and RetinaNet from torchvision with each stage's box loss from a preset.

``build_model(model_cfg, params, num_classes)`` builds torchvision's detector with the
knobs of ``ModelConfig``, then gives each stage the box loss and box coder of its
settings through ``huberkl.detect.model.apply.apply_params``, the same call a user makes on
their own torchvision model (one code path):

- Faster R-CNN: the RPN takes ``params.stage("proposal")``, the ROI heads
  ``params.stage("detection")``;
- RetinaNet: its head is the proposal stage (paper, Sec. 7.2), ``params.stage("proposal")``.

Labels: data use 1..C for C object categories. Faster R-CNN gets C + 1 classes (0 is
background, torchvision's convention). RetinaNet also gets C + 1 logits, so that labels
1..C index them unchanged, as torchvision's COCO RetinaNet (91 logits) does; logit 0 is
never a positive target (the focal loss only pushes it down) and is masked out at
inference, so both detectors output labels in 1..C only.

No weights are ever downloaded: ``weights`` (the whole model) and ``backbone_weights``
(classification weights) are local state dicts or torchvision weights names read from the
hub cache (:mod:`huberkl.detect.model.weights`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from math import gcd
from pathlib import Path
from typing import Any

from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.ops import MultiScaleRoIAlign

from huberkl.detect.model.apply import apply_params
from huberkl.detect.model.backbones import BACKBONES, build_backbone
from huberkl.detect.model.boxloss import ENCODINGS
from huberkl.detect.model.weights import BN_COUNTER, load_model_weights, read_state_dict
from huberkl.errors import InputError, is_integer, is_number
from huberkl.params import Preset

ARCHS = ("faster_rcnn", "retinanet")
HEAD_NORMS = ("none", "group")
# ModelConfig's numeric fields by what they allow (checked before any arithmetic uses them)
COUNTS = (  # integers >= 1 (None allowed where the field's default is None)
    "fpn_channels", "tiny_depth", "min_size", "max_size", "representation_size",
    "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
    "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_batch_size_per_image",
    "topk_candidates", "detections_per_img",
)  # fmt: skip
UNIT_FRACTIONS = (  # IoU and score thresholds, sampling fractions: numbers in [0, 1]
    "rpn_nms_thresh", "rpn_fg_iou_thresh", "rpn_bg_iou_thresh", "rpn_positive_fraction",
    "box_fg_iou_thresh", "box_bg_iou_thresh", "box_positive_fraction", "fg_iou_thresh",
    "bg_iou_thresh", "score_thresh", "nms_thresh",
)  # fmt: skip


@dataclass(frozen=True)
class ModelConfig:
    """Detector settings; names follow torchvision's constructor arguments where they exist.

    The defaults are the CPU quick model: tiny backbone, 128-px images, anchors for
    12–60-px objects. For COCO set e.g. ``backbone=resnet50, fpn_channels=256,
    min_size=800, max_size=1333, anchor_sizes=null`` (torchvision's anchors).
    """

    arch: str = "faster_rcnn"
    backbone: str = "tiny"
    fpn_channels: int | None = None  # None: 96 for tiny, 256 (torchvision's) otherwise
    tiny_widths: tuple[int, ...] = (48, 96, 192, 384)  # channels at strides 4, 8, 16, 32
    tiny_depth: int = 2  # conv-BN-ReLU per tiny stage
    min_size: int = 128  # GeneralizedRCNNTransform resizes the short side to this
    max_size: int = 128
    # One base size per pyramid level (RetinaNet adds the 2^(1/3), 2^(2/3) octave scales
    # as torchvision does), or a list of sizes per level. None: torchvision's 32·2^i
    # (tiny: 16·2^i, for 128-px images).
    anchor_sizes: tuple | None = None
    aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    retinanet_head_norm: str = "none"  # "group": GroupNorm in the RetinaNet head (torchvision v2)
    target_encoding: str = "log"  # log (torchvision) | linear (w/w_a - 1, Appendix D)
    weights: str | None = None  # whole model: local state dict or torchvision name (COCO_V1)
    backbone_weights: str | None = None  # classification weights: path or name (IMAGENET1K_V1)
    # A detector checkpoint or state dict whose backbone (body + FPN) starts this model, e.g.
    # one pretrained on a pretext task and shared by every setting, as ImageNet is in the paper
    backbone_init: str | None = None
    trainable_layers: int | None = None  # backbone stages that train, from the top; None: all
    frozen_bn: bool = False  # FrozenBatchNorm2d in the backbone (for ImageNet-initialised runs)
    representation_size: int = 1024  # Faster R-CNN TwoMLPHead width
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_batch_size_per_image: int = 512
    box_positive_fraction: float = 0.25
    fg_iou_thresh: float = 0.5  # RetinaNet anchor matching
    bg_iou_thresh: float = 0.4
    topk_candidates: int = 1000  # RetinaNet, per level before NMS
    score_thresh: float = 0.05  # final detections (box_score_thresh for Faster R-CNN)
    nms_thresh: float = 0.5
    detections_per_img: int = 100  # COCO scores at most 100 per image

    def __post_init__(self) -> None:
        self._check_numbers()
        if self.arch not in ARCHS:
            raise InputError(f"arch must be one of {'|'.join(ARCHS)}, got {self.arch!r}")
        if self.backbone not in BACKBONES:
            raise InputError(
                f"backbone must be one of {'|'.join(BACKBONES)}, got {self.backbone!r}"
            )
        if self.retinanet_head_norm not in HEAD_NORMS:
            raise InputError(
                f"retinanet_head_norm must be one of {'|'.join(HEAD_NORMS)}, got {self.retinanet_head_norm!r}"
            )
        if self.target_encoding not in ENCODINGS:
            raise InputError(
                f"target_encoding must be one of {'|'.join(ENCODINGS)}, got {self.target_encoding!r}"
            )
        if not 0 < self.min_size <= self.max_size:
            raise InputError(
                f"need 0 < min_size <= max_size, got min_size={self.min_size}, max_size={self.max_size}"
            )

    def _check_numbers(self) -> None:
        """Types and ranges first, so that ``score_thresh=abc`` is bad input, not a traceback."""
        for name in COUNTS:
            value = getattr(self, name)
            if value is None and name == "fpn_channels":
                continue
            if not is_integer(value) or value < 1:
                raise InputError(f"{name} must be an integer >= 1, got {value!r}")
        for name in UNIT_FRACTIONS:
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value <= 1:
                raise InputError(f"{name} must be a number in [0, 1], got {value!r}")
        if self.trainable_layers is not None and (
            not is_integer(self.trainable_layers) or self.trainable_layers < 0
        ):
            raise InputError(
                f"trainable_layers must be an integer >= 0 or null, got {self.trainable_layers!r}"
            )
        if not isinstance(self.frozen_bn, bool):
            raise InputError(f"frozen_bn must be true or false, got {self.frozen_bn!r}")
        widths = self.tiny_widths
        if not isinstance(widths, Sequence) or not all(is_integer(w) and w >= 1 for w in widths):
            raise InputError(f"tiny_widths must be integers >= 1, got {widths!r}")
        ratios = self.aspect_ratios
        if not ratios or not all(is_number(r) and r > 0 for r in ratios):
            raise InputError(f"aspect_ratios must be positive numbers, got {ratios!r}")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | ModelConfig) -> ModelConfig:
        """From a dict or an OmegaConf node; an unknown key is an InputError listing the known."""
        if isinstance(data, ModelConfig):
            return data
        plain = _plain(data)
        if not isinstance(plain, dict):
            raise InputError(f"model config must be a mapping, got {type(data).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(plain) - set(names))
        if unknown:
            raise InputError(f"unknown model key(s) {unknown}; allowed: {', '.join(names)}")
        return cls(**plain)


def _plain(value: Any) -> Any:
    """OmegaConf/Mapping/list values as dicts and tuples (hashable, comparable)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(_plain(v) for v in value)
    return value


def _anchor_sizes(cfg: ModelConfig, levels: int) -> tuple[tuple[int, ...], ...]:
    """Per-level anchor sizes: explicit ones, or torchvision's doubling sizes per level."""
    if cfg.anchor_sizes is None:
        if cfg.backbone == "mobilenet_v3" and cfg.arch == "faster_rcnn":
            return ((32, 64, 128, 256, 512),) * levels  # torchvision's mobilenet Faster R-CNN
        if cfg.backbone == "vgg16":
            return ((64, 128, 256, 512),)  # py-faster-rcnn on COCO: scales 4, 8, 16, 32 x 16 px
        base = 16 if cfg.backbone == "tiny" else 32
        sizes: Sequence[Any] = [base * 2**i for i in range(levels)]
    else:
        sizes = cfg.anchor_sizes
    if len(sizes) != levels:
        raise InputError(
            f"anchor_sizes needs one entry per pyramid level ({levels} for {cfg.backbone}/{cfg.arch}), got {len(sizes)}"
        )
    out = []
    for s in sizes:
        if isinstance(s, (int, float)):
            s = (
                (s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3)))
                if cfg.arch == "retinanet"
                else (s,)
            )
        s = tuple(int(v) for v in s)
        if not s or min(s) < 1:
            raise InputError(f"anchor sizes must be positive pixel sizes, got {list(sizes)}")
        out.append(s)
    if len({len(s) for s in out}) != 1:
        raise InputError(f"every level needs the same number of anchor sizes, got {out}")
    return tuple(out)


def _backbone(cfg: ModelConfig) -> nn.Module:
    fpn = (
        cfg.fpn_channels
        if cfg.fpn_channels is not None
        else (96 if cfg.backbone == "tiny" else 256)
    )
    return build_backbone(
        cfg.backbone,
        extra="pool" if cfg.arch == "faster_rcnn" else "p6p7",
        fpn_channels=fpn,
        tiny_widths=cfg.tiny_widths,
        tiny_depth=cfg.tiny_depth,
        frozen_bn=cfg.frozen_bn,
        trainable_layers=cfg.trainable_layers,
        weights_path=cfg.backbone_weights,
    )


class HuberKLRetinaNet(RetinaNet):
    """RetinaNet whose logit 0 is masked at inference: labels are 1..C (module docstring).

    torchvision keeps two coders, ``head.regression_head.box_coder`` (targets) and
    ``self.box_coder`` (decoding); ``apply_params`` makes both the head's object.
    """

    def postprocess_detections(self, head_outputs, anchors, image_shapes):  # type: ignore[override]
        logits = [lv.clone() for lv in head_outputs["cls_logits"]]
        for lv in logits:
            lv[..., 0] = float("-inf")  # label 0 is no category (labels are 1..C)
        outputs = dict(head_outputs, cls_logits=logits)
        return super().postprocess_detections(outputs, anchors, image_shapes)


def model_config(cfg: Any) -> dict[str, Any]:
    """A run config's ``detect.model``, resolved: what :func:`build_model` takes."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg.detect.model, resolve=True)  # type: ignore[return-value]


def preset_of(cfg: Any) -> Preset:
    """A run config's ``params``: the box-loss preset :func:`build_model` gives each stage."""
    from omegaconf import OmegaConf

    return Preset.from_mapping(OmegaConf.to_container(cfg.params, resolve=True))


def build_model(
    model_cfg: ModelConfig | Mapping[str, Any],
    params: Preset | str | Path | Mapping[str, Any],
    num_classes: int,
) -> nn.Module:
    """Faster R-CNN or RetinaNet for ``num_classes`` = C object categories (labels 1..C).

    ``params``: anything ``apply_params`` takes (a ``Preset``, preset name or YAML path).
    Train mode returns torchvision's loss dict; eval mode detections with labels 1..C.
    """
    cfg = ModelConfig.from_mapping(model_cfg)
    if not is_integer(num_classes) or num_classes < 1:
        raise InputError(
            f"num_classes must be the number of object categories (>= 1), got {num_classes!r}"
        )
    backbone = _backbone(cfg)
    sizes = _anchor_sizes(cfg, len(backbone.level_names))
    anchors = AnchorGenerator(sizes, (tuple(float(r) for r in cfg.aspect_ratios),) * len(sizes))
    common = dict(min_size=cfg.min_size, max_size=cfg.max_size)

    if cfg.arch == "faster_rcnn":
        pool = MultiScaleRoIAlign(
            featmap_names=backbone.featmap_names, output_size=7, sampling_ratio=2
        )
        box_head = TwoMLPHead(backbone.out_channels * 7 * 7, cfg.representation_size)
        model = FasterRCNN(
            backbone,
            num_classes=None,
            rpn_anchor_generator=anchors,
            box_roi_pool=pool,
            box_head=box_head,
            box_predictor=FastRCNNPredictor(cfg.representation_size, num_classes + 1),
            rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
            rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
            rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
            rpn_nms_thresh=cfg.rpn_nms_thresh,
            rpn_fg_iou_thresh=cfg.rpn_fg_iou_thresh,
            rpn_bg_iou_thresh=cfg.rpn_bg_iou_thresh,
            rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
            rpn_positive_fraction=cfg.rpn_positive_fraction,
            box_score_thresh=cfg.score_thresh,
            box_nms_thresh=cfg.nms_thresh,
            box_detections_per_img=cfg.detections_per_img,
            box_fg_iou_thresh=cfg.box_fg_iou_thresh,
            box_bg_iou_thresh=cfg.box_bg_iou_thresh,
            box_batch_size_per_image=cfg.box_batch_size_per_image,
            box_positive_fraction=cfg.box_positive_fraction,
            **common,
        )
    else:
        channels = backbone.out_channels
        norm = (
            partial(nn.GroupNorm, gcd(32, channels)) if cfg.retinanet_head_norm == "group" else None
        )
        num_anchors = anchors.num_anchors_per_location()[0]
        head = RetinaNetHead(channels, num_anchors, num_classes + 1, norm_layer=norm)
        model = HuberKLRetinaNet(
            backbone,
            num_classes + 1,
            anchor_generator=anchors,
            head=head,
            score_thresh=cfg.score_thresh,
            nms_thresh=cfg.nms_thresh,
            detections_per_img=cfg.detections_per_img,
            fg_iou_thresh=cfg.fg_iou_thresh,
            bg_iou_thresh=cfg.bg_iou_thresh,
            topk_candidates=cfg.topk_candidates,
            **common,
        )
    apply_params(model, params, target_encoding=cfg.target_encoding)
    model.huberkl_config = cfg  # what built it, for checkpoints and error messages
    if cfg.backbone_init is not None:
        init_backbone(model, cfg.backbone_init)
    if cfg.weights is not None:  # a local file or torchvision's weights by name (COCO_V1)
        load_model_weights(model, cfg.arch, cfg.backbone, cfg.weights)
    return model


def init_backbone(model: nn.Module, path: str | Path) -> list[str]:
    """Start ``model.backbone`` from the ``backbone.*`` tensors of a detector file (a
    checkpoint or a state dict); the heads keep their initialisation. Extra pyramid levels
    the file lacks (RetinaNet's P6/P7 from a Faster R-CNN file) keep theirs too and are
    returned; any other missing key or shape mismatch names the file (InputError)."""
    what = "detect.model.backbone_init"
    state = {
        k[len("backbone.") :]: v
        for k, v in read_state_dict(path, what).items()
        if k.startswith("backbone.")
    }
    own = model.backbone.state_dict()
    fresh = [k for k in own if k not in state and k.startswith("fpn.extra_blocks.")]
    missing = [k for k in own if k not in state and k not in fresh and not k.endswith(BN_COUNTER)]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if not state or missing or shapes:
        detail = (
            "no backbone.* tensors"
            if not state
            else f"{len(missing)} missing (e.g. backbone.{missing[0]})"
            if missing
            else f"shape of backbone.{shapes[0]}: file {list(state[shapes[0]].shape)}, "
            f"model {list(own[shapes[0]].shape)}"
        )
        raise InputError(f"{what} file {str(path)!r} does not fit this backbone: {detail}")
    model.backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return fresh


def detector_summary(model: nn.Module) -> dict[str, Any]:
    """Short facts about a built model, for logs: arch, backbone, parameter counts."""
    cfg: ModelConfig | None = getattr(model, "huberkl_config", None)
    params = list(model.parameters())
    return {
        "arch": cfg.arch if cfg else type(model).__name__,
        "backbone": cfg.backbone if cfg else "?",
        "parameters": sum(p.numel() for p in params),
        "trainable": sum(p.numel() for p in params if p.requires_grad),
        "backbone_parameters": sum(p.numel() for p in model.backbone.parameters()),
    }


__all__ = [
    "ARCHS",
    "HuberKLRetinaNet",
    "ModelConfig",
    "build_model",
    "detector_summary",
    "init_backbone",
    "model_config",
    "preset_of",
]
