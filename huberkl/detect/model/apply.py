"""Give a user's own torchvision detector the box-loss settings of a preset, in place.

``apply_params(model, params)`` hands each stage of a torchvision ``FasterRCNN`` (any
backbone) or ``RetinaNet`` the box loss (type, α, λ; ``huberkl.detect.model.boxloss``) and box
coder (weights 1/σ, log or linear size targets; Eq. 24, 28, 89-90) of its settings:

- Faster R-CNN: the RPN takes ``params.stage("proposal")``, the ROI heads
  ``params.stage("detection")`` (a Mask/Keypoint R-CNN keeps its mask/keypoint losses);
- RetinaNet: its head is the proposal stage (paper, Sec. 7.2); the model's decoding coder
  becomes the head's, so that targets and detections use one coder.

Each stage object stays where it is and becomes the loss-overriding subclass of
``huberkl.detect.model.heads`` (``heads.adopt``), so every parameter, buffer, ``state_dict`` key,
hook and other setting of the user's model is kept. With the ``torchvision-frcnn`` /
``torchvision-retinanet`` presets the loss dictionary equals the untouched model's.

Apply it to the detector itself, before wrapping it (DDP, ``torch.compile``); before or
after building the optimiser, since no parameter changes. The box coder also decodes
predictions: a pretrained model given other σ or another target encoding reads its
regression outputs in the new units, so fine-tune it after.
A RetinaNet head with another loss (torchvision's v2 uses GIoU) gets the preset's loss.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from torch import nn
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection.retinanet import RetinaNetHead, RetinaNetRegressionHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork

from huberkl.detect.model.boxloss import ENCODINGS, BoxLoss, make_box_coder
from huberkl.detect.model.heads import HuberKLRegressionHead, HuberKLRoIHeads, HuberKLRPN, adopt
from huberkl.errors import InputError
from huberkl.params import Preset, resolve_preset

SUPPORTED = (
    "torchvision FasterRCNN (any backbone, also Mask/Keypoint R-CNN; RegionProposalNetwork "
    "and RoIHeads) "
    "or RetinaNet (RetinaNetHead with RetinaNetRegressionHead)"
)

M = TypeVar("M", bound=nn.Module)


def _check_stage(stage: object, where: str, stock: type, ours: type) -> None:
    if type(stage) not in (stock, ours):
        raise InputError(
            f"{where} is a {type(stage).__name__}, which apply_params does not know; "
            f"supported: {SUPPORTED}"
        )


def apply_params(
    model: M,
    params: str | Path | Preset | Mapping[str, Any],
    *,
    target_encoding: str = "log",
) -> M:
    """Set each stage's α, λ, σ, loss type and target encoding; return ``model``.

    ``params``: a preset name (``"exp-c"``), a preset YAML file (``Preset.to_mapping``
    schema), or a ``Preset``. ``target_encoding``: ``log`` (torchvision's) or ``linear``
    (w/w_a − 1, Appendix D). Everything is checked before anything changes: an
    unsupported model or stage raises ``InputError`` and leaves the model untouched.
    """
    if target_encoding not in ENCODINGS:
        raise InputError(
            f"target_encoding must be one of {'|'.join(ENCODINGS)}, got {target_encoding!r}"
        )
    if isinstance(model, FasterRCNN):
        _check_stage(model.rpn, "model.rpn", RegionProposalNetwork, HuberKLRPN)
        _check_stage(model.roi_heads, "model.roi_heads", RoIHeads, HuberKLRoIHeads)
        preset = resolve_preset(params)
        proposal, detection = preset.stage("proposal"), preset.stage("detection")
        rpn_loss = BoxLoss.from_stage(proposal, preset.form)
        roi_loss = BoxLoss.from_stage(detection, preset.form)
        adopt(model.rpn, HuberKLRPN, rpn_loss, make_box_coder(proposal, target_encoding))
        adopt(
            model.roi_heads, HuberKLRoIHeads, roi_loss, make_box_coder(detection, target_encoding)
        )
        return model
    if isinstance(model, RetinaNet):
        _check_stage(model.head, "model.head", RetinaNetHead, RetinaNetHead)
        head = model.head.regression_head
        _check_stage(
            head, "model.head.regression_head", RetinaNetRegressionHead, HuberKLRegressionHead
        )
        preset = resolve_preset(params)
        settings = preset.stage("proposal")
        coder = make_box_coder(settings, target_encoding)
        adopt(head, HuberKLRegressionHead, BoxLoss.from_stage(settings, preset.form), coder)
        model.box_coder = coder  # decoding uses the coder the targets were encoded with
        return model
    raise InputError(f"apply_params needs a {SUPPORTED}; got a {type(model).__name__}")


__all__ = ["SUPPORTED", "apply_params"]
