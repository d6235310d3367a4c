"""The per-stage box-regression loss and target coding, built from a ``StageParams``.

A stage's settings (α, λ, σx, σy, σw, σh, loss type; ``huberkl.params``) become two
objects that the detector heads use in place of torchvision's hard-coded ones:

- a box coder: torchvision's ``BoxCoder`` with weights 1/σ, so the regression targets
  are the normalised targets (t − µ)/σ of Eq. 24 and 28 (µ = 0); with
  ``target_encoding="linear"`` a ``LinearBoxCoder`` whose width/height targets are
  w/w_a − 1 instead of log(w/w_a) (Eq. 30–31; Appendix D, Eq. 89–90);
- a ``BoxLoss`` that sums the per-coordinate loss of (prediction − target).

Loss types, with ``x`` the difference of normalised targets and ``w`` the smooth-L1
weight defined below:

- ``huber``: ``w·smooth_l1(x, β=α) = (w/α)·H_α(x)`` (Eq. 4; the frameworks' smooth L1);
- ``l1``:    ``w·|x|`` (the α → 0 limit);
- ``kl``:    Appendix E replaces H_α by its tight upper bound D_{α/2,1/α} (Eq. 20). With the
  scaling rule λ·D_{α,β} = D_{α,β/λ} (Sec. 4.3):
  ``(w/α)·H_α(x) ≤ (w/α)·D_{α/2,1/α}(x) = D_{α/2,1/w}(x) = w·(α/2·e^{−2|x|/α} + |x| − α/2)``
  (Eq. 16). It is ≥ the huber loss of the same settings everywhere, equal to it up to
  O(e^{−2|x|/α}) for |x| ≫ α, and tends to ``w·|x|`` as α → 0.

The weight ``w`` depends on the form the preset is read in (``Preset.form``):
``smooth-l1`` (the implementation's (λ/α)·H_α, Eq. 26/32) gives ``w = λ``; ``huber`` (the
publication's λ·H_α) gives ``w = λ·α``, since λ·H_α = λα·smooth_l1(β=α). An ``l1`` stage
always uses ``w = λ``.

What the summed loss is divided by (sampled anchors, RoIs, foreground anchors) is left
as torchvision does it for each stage; ``StageParams.normaliser`` only documents it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder

from huberkl.errors import InputError
from huberkl.losses import kl_loss, smooth_l1
from huberkl.params import FORMS, StageParams

ENCODINGS = ("log", "linear")
# torchvision clips log-space width/height deltas at log(1000/16) before exp(); the linear
# coder clips the scale factor 1 + t_w at the same bound, exp(log(1000/16)) = 62.5.
_LOG_CLIP = math.log(1000.0 / 16)


class LinearBoxCoder(BoxCoder):
    """``BoxCoder`` with linear size targets t_w = w/w_a − 1, t_h = h/h_a − 1 (Eq. 89–90).

    Centre targets are torchvision's (x − x_a)/w_a; every target is multiplied by the
    coder weight 1/σ like ``BoxCoder`` does. Decoding inverts that: w = w_a·(1 + t_w),
    clamped to [0, 62.5·w_a] (a negative width has no meaning; the upper bound mirrors
    torchvision's ``bbox_xform_clip``).
    """

    def encode_single(self, reference_boxes: Tensor, proposals: Tensor) -> Tensor:
        weights = torch.as_tensor(
            self.weights, dtype=reference_boxes.dtype, device=reference_boxes.device
        )
        aw = proposals[:, 2] - proposals[:, 0]
        ah = proposals[:, 3] - proposals[:, 1]
        ax = proposals[:, 0] + 0.5 * aw
        ay = proposals[:, 1] + 0.5 * ah
        gw = reference_boxes[:, 2] - reference_boxes[:, 0]
        gh = reference_boxes[:, 3] - reference_boxes[:, 1]
        gx = reference_boxes[:, 0] + 0.5 * gw
        gy = reference_boxes[:, 1] + 0.5 * gh
        targets = torch.stack(((gx - ax) / aw, (gy - ay) / ah, gw / aw - 1.0, gh / ah - 1.0), dim=1)
        return targets * weights

    def decode_single(self, rel_codes: Tensor, boxes: Tensor) -> Tensor:
        boxes = boxes.to(rel_codes.dtype)
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights
        wx, wy, ww, wh = self.weights
        dx = rel_codes[:, 0::4] / wx
        dy = rel_codes[:, 1::4] / wy
        scale_w = (1.0 + rel_codes[:, 2::4] / ww).clamp(min=0.0, max=math.exp(self.bbox_xform_clip))
        scale_h = (1.0 + rel_codes[:, 3::4] / wh).clamp(min=0.0, max=math.exp(self.bbox_xform_clip))
        pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
        pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
        half_w = 0.5 * scale_w * widths[:, None]
        half_h = 0.5 * scale_h * heights[:, None]
        pred = torch.stack(
            (pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h),
            dim=2,
        )
        return pred.flatten(1)


def make_box_coder(stage: StageParams, encoding: str = "log") -> BoxCoder:
    """torchvision ``BoxCoder(weights=1/σ)`` (Eq. 24, 28), or its linear twin (Appendix D)."""
    if encoding not in ENCODINGS:
        raise InputError(f"target_encoding must be one of {'|'.join(ENCODINGS)}, got {encoding!r}")
    cls = BoxCoder if encoding == "log" else LinearBoxCoder
    return cls(weights=stage.box_coder_weights(), bbox_xform_clip=_LOG_CLIP)


class BoxLoss(nn.Module):
    """Summed box loss of one stage: huber (smooth L1), l1 or kl (see the module docstring).

    Holds no parameters, so it never enters a ``state_dict``; it is a module so that
    ``print(model)`` shows each stage's loss.
    """

    def __init__(self, loss: str = "huber", alpha: float = 1.0, weight: float = 1.0) -> None:
        super().__init__()
        if loss not in ("huber", "l1", "kl"):
            raise InputError(f"loss must be one of huber|l1|kl, got {loss!r}")
        if loss != "l1" and not alpha > 0:
            raise InputError(f"alpha must be > 0 for a {loss} loss, got {alpha}")
        if not weight > 0:
            raise InputError(f"the loss weight must be > 0, got {weight}")
        self.loss = loss
        self.alpha = 0.0 if loss == "l1" else float(alpha)
        self.weight = float(weight)

    @classmethod
    def from_stage(cls, stage: StageParams, form: str = "smooth-l1") -> BoxLoss:
        """The loss of ``stage`` read in ``form`` (``Preset.form``): w = λ or λ·α."""
        if form not in FORMS:
            raise InputError(f"form must be one of {'|'.join(FORMS)}, got {form!r}")
        weight = stage.lam * stage.alpha if form == "huber" and stage.loss != "l1" else stage.lam
        return cls(stage.loss, float(stage.alpha), float(weight))

    def elementwise(self, diff: Tensor) -> Tensor:
        """Per-coordinate loss of ``diff`` = prediction − target (normalised targets)."""
        if self.loss == "kl":
            return kl_loss(diff, self.alpha / 2, 1.0 / self.weight)  # D_{α/2,1/w}, Eq. 16/20
        return smooth_l1(diff, self.alpha) * self.weight

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        """Sum over boxes and coordinates, like torchvision's ``reduction="sum"``.

        huber and l1 go through torch's fused ``smooth_l1_loss``/``l1_loss`` (the same
        H_β/β as ``huberkl.losses.smooth_l1``, checked by the tests): on a GPU the
        unfused form adds ~30 kernel launches per call, 4-8 % of a small detector's
        training step (the benchmark budget is 3 %).
        """
        if self.loss == "kl":
            return kl_loss(pred - target, self.alpha / 2, 1.0 / self.weight, reduction="sum")
        if self.loss == "l1":
            out = F.l1_loss(pred, target, reduction="sum")
        else:
            out = F.smooth_l1_loss(pred, target, beta=self.alpha, reduction="sum")
        return out if self.weight == 1.0 else out * self.weight

    def extra_repr(self) -> str:
        return f"loss={self.loss}, alpha={self.alpha:g}, weight={self.weight:g}"
