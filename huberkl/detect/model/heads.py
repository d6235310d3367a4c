"""torchvision's detector stages with the box loss and box coder of a ``StageParams``.

torchvision hard-codes the box loss of each stage (``beta=1/9`` in
``RegionProposalNetwork.compute_loss`` and ``roi_heads.fastrcnn_loss``, ``_loss_type="l1"``
in RetinaNet's regression head) and the RPN/RetinaNet box coder weights. These
subclasses change only that, through the seams torchvision offers (a method, a module
passed in, an attribute), and never patch torchvision's module-level functions:

- ``HuberKLRPN``: ``compute_loss`` overridden; sampling, matching and normaliser (sampled
  anchors) unchanged;
- ``HuberKLRoIHeads``: the training branch of ``forward`` calls ``self.compute_loss``, a
  copy of ``fastrcnn_loss`` with our box loss (normaliser: sampled RoIs), and
  torchvision's mask/keypoint losses where those heads exist; inference is torchvision's
  own ``forward``;
- ``HuberKLRegressionHead``: RetinaNet's regression head with ``compute_loss`` overridden
  (normaliser: foreground anchors per image, then images).

``adopt`` turns an existing torchvision stage into its subclass in place (the object,
its parameters, buffers, hooks and other attributes stay; ``huberkl.detect.model.apply``).

Loss-dict keys stay torchvision's (``loss_rpn_box_reg``, ``loss_box_reg``,
``bbox_regression``), so with the ``torchvision-*`` presets the dicts equal stock ones.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.retinanet import RetinaNetRegressionHead
from torchvision.models.detection.roi_heads import RoIHeads, keypointrcnn_loss, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork

from huberkl.detect.model.boxloss import BoxLoss


def adopt(stage: nn.Module, cls: type[nn.Module], box_loss: BoxLoss, box_coder: BoxCoder) -> None:
    """Make ``stage`` a ``cls`` in place and give it ``box_loss`` and ``box_coder``.

    ``cls`` must be ``type(stage)``'s direct subclass here (or ``type(stage)`` itself, to
    change the settings again). The subclasses add no parameters or buffers (``BoxLoss``
    holds none), so ``state_dict`` keys and values stay as they were.
    """
    if type(stage) is not cls and type(stage) is not cls.__bases__[0]:
        raise TypeError(f"cannot adopt a {type(stage).__name__} as {cls.__name__}")
    stage.__class__ = cls
    stage.box_loss = box_loss
    stage.box_coder = box_coder


class HuberKLRPN(RegionProposalNetwork):
    """RPN whose box loss and box coder come from the proposal stage's settings."""

    def __init__(self, *args, box_loss: BoxLoss, box_coder: BoxCoder, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_loss = box_loss
        self.box_coder = box_coder  # used for both target encoding and proposal decoding

    def compute_loss(
        self,
        objectness: Tensor,
        pred_bbox_deltas: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        """torchvision's RPN loss with ``self.box_loss`` in place of smooth L1 (beta 1/9)."""
        sampled_pos_inds, sampled_neg_inds = self.fg_bg_sampler(labels)
        sampled_pos_inds = torch.where(torch.cat(sampled_pos_inds, dim=0))[0]
        sampled_neg_inds = torch.where(torch.cat(sampled_neg_inds, dim=0))[0]
        sampled_inds = torch.cat([sampled_pos_inds, sampled_neg_inds], dim=0)
        objectness = objectness.flatten()
        labels_cat = torch.cat(labels, dim=0)
        targets = torch.cat(regression_targets, dim=0)
        box_loss = self.box_loss(pred_bbox_deltas[sampled_pos_inds], targets[sampled_pos_inds]) / (
            sampled_inds.numel()
        )
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness[sampled_inds], labels_cat[sampled_inds]
        )
        return objectness_loss, box_loss


class HuberKLRoIHeads(RoIHeads):
    """ROI heads whose box loss and box coder come from the detection stage.

    A Mask R-CNN's or Keypoint R-CNN's mask and keypoint branches keep torchvision's own
    losses (``maskrcnn_loss``, ``keypointrcnn_loss``) on the positive sampled proposals.
    """

    def __init__(self, *args, box_loss: BoxLoss, box_coder: BoxCoder, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.box_loss = box_loss
        self.box_coder = box_coder

    def compute_loss(
        self,
        class_logits: Tensor,
        box_regression: Tensor,
        labels: list[Tensor],
        regression_targets: list[Tensor],
    ) -> tuple[Tensor, Tensor]:
        """``roi_heads.fastrcnn_loss`` with ``self.box_loss``; divided by the sampled RoIs."""
        labels_cat = torch.cat(labels, dim=0)
        targets = torch.cat(regression_targets, dim=0)
        classification_loss = F.cross_entropy(class_logits, labels_cat)
        pos = torch.where(labels_cat > 0)[0]
        labels_pos = labels_cat[pos]
        n = class_logits.shape[0]
        box_regression = box_regression.reshape(n, box_regression.size(-1) // 4, 4)
        box_loss = self.box_loss(box_regression[pos, labels_pos], targets[pos]) / labels_cat.numel()
        return classification_loss, box_loss

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets should not be None in training mode")
        for t in targets:
            if t["boxes"].dtype not in (torch.float, torch.double, torch.half):
                raise TypeError(f"target boxes must be of float type, got {t['boxes'].dtype}")
            if t["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must be of int64 type, got {t['labels'].dtype}")
            if self.has_keypoint() and t["keypoints"].dtype != torch.float32:
                raise TypeError(f"target keypoints must be float32, got {t['keypoints'].dtype}")
        proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
            proposals, targets
        )
        box_features = self.box_roi_pool(features, proposals, image_shapes)
        box_features = self.box_head(box_features)
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = self.compute_loss(
            class_logits, box_regression, labels, regression_targets
        )
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        if self.has_mask() or self.has_keypoint():
            losses.update(
                self._mask_keypoint_losses(
                    features, proposals, image_shapes, targets, matched_idxs, labels
                )
            )
        return [], losses

    def _mask_keypoint_losses(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
        matched_idxs: list[Tensor],
        labels: list[Tensor],
    ) -> dict[str, Tensor]:
        """torchvision's training branches for masks and keypoints, on positive proposals."""
        positive = [torch.where(lab > 0)[0] for lab in labels]
        pos_proposals = [p[i] for p, i in zip(proposals, positive, strict=True)]
        pos_matched = [m[i] for m, i in zip(matched_idxs, positive, strict=True)]
        losses = {}
        if self.has_mask():
            x = self.mask_roi_pool(features, pos_proposals, image_shapes)
            logits = self.mask_predictor(self.mask_head(x))
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            losses["loss_mask"] = maskrcnn_loss(
                logits, pos_proposals, gt_masks, gt_labels, pos_matched
            )
        if self.has_keypoint():
            x = self.keypoint_roi_pool(features, pos_proposals, image_shapes)
            logits = self.keypoint_predictor(self.keypoint_head(x))
            gt_keypoints = [t["keypoints"] for t in targets]
            losses["loss_keypoint"] = keypointrcnn_loss(
                logits, pos_proposals, gt_keypoints, pos_matched
            )
        return losses


class HuberKLRegressionHead(RetinaNetRegressionHead):
    """RetinaNet's regression head with the stage's box loss and box coder.

    The model keeps a second coder (``RetinaNet.box_coder``) for decoding detections;
    ``huberkl.detect.model.apply.apply_params`` points both at the same object.
    """

    def __init__(
        self,
        in_channels: int,
        num_anchors: int,
        norm_layer: Callable[..., torch.nn.Module] | None = None,
        *,
        box_loss: BoxLoss,
        box_coder: BoxCoder,
    ) -> None:
        super().__init__(in_channels, num_anchors, norm_layer=norm_layer)
        self.box_loss = box_loss
        self.box_coder = box_coder

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> Tensor:
        """Per image: loss over foreground anchors / their count; then the mean over images."""
        bbox_regression = head_outputs["bbox_regression"]
        total = bbox_regression.new_zeros(())
        for target, pred, anchors_i, matched in zip(
            targets, bbox_regression, anchors, matched_idxs, strict=True
        ):
            fg = torch.where(matched >= 0)[0]
            gt = target["boxes"][matched[fg]]
            encoded = self.box_coder.encode_single(gt, anchors_i[fg])
            total = total + self.box_loss(pred[fg], encoded) / max(1, fg.numel())
        return total / max(1, len(targets))
