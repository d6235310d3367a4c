"""Config text that sets a stage's α, λ, σ in torchvision, detectron2 and mmdetection.

Each framework's smooth L1 takes beta = α, a loss weight and target stds σ (or their
inverse as box-coder weights); docs/FRAMEWORK-DEFAULTS.md lists their defaults and the
source files that hard-code them.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from huberkl.errors import InputError
from huberkl.interpret.scales import check_form
from huberkl.params import COORDS, StageParams

HEADS = ("rpn", "roi", "retinanet")
FRAMEWORKS = ("torchvision", "detectron2", "mmdetection")

# --------------------------------------------------------------------------- framework fragments


def framework_settings(params: StageParams, form: str = "smooth-l1") -> dict[str, Any]:
    """What a framework's smooth L1 needs: beta = α, weight (λ, or λ·α for λ·H_α), 1/σ, σ."""
    check_form(form)
    weight = (
        params.lam if (form == "smooth-l1" or params.loss == "l1") else params.lam * params.alpha
    )
    return {
        "loss": params.loss,
        "beta": params.effective_alpha,
        "weight": weight,
        "weight_note": (
            "λ·α, since λ·H_α = λ·α·smooth_l1(beta=α)"
            if form == "huber" and params.loss != "l1"
            else "λ"
        ),
        "coder_weights": tuple(1 / params.sigma[c] for c in COORDS),
        "stds": tuple(params.sigma[c] for c in COORDS),
    }


def _py(v: Fraction) -> str:
    """A Python literal for ``v``: a float when it is exact in decimal, else ``p / q``."""
    d = v.denominator
    while d % 2 == 0:
        d //= 2
    while d % 5 == 0:
        d //= 5
    return repr(float(v)) if d == 1 else f"{v.numerator} / {v.denominator}"


def _yaml(v: Fraction) -> str:
    text = repr(float(v))
    return text if _py(v) == text else f"{text}  # {v}"


def _tup(vs: Sequence[Fraction]) -> str:
    return "(" + ", ".join(_py(v) for v in vs) + ")"


def _lst(vs: Sequence[Fraction]) -> str:
    return "[" + ", ".join(_py(v) for v in vs) + "]"


def fragments(params: StageParams, form: str = "smooth-l1", head: str = "roi") -> dict[str, str]:
    """Config text for torchvision, detectron2 and mmdetection that sets ``params`` on ``head``."""
    if head not in HEADS:
        raise InputError(f"head must be one of {'|'.join(HEADS)}, got {head!r}")
    s = framework_settings(params, form)
    return {
        "torchvision": _torchvision(s, head),
        "detectron2": _detectron2(s, head),
        "mmdetection": _mmdetection(s, head),
    }


_KL_NOTE = "# loss kl (D_{α/2,1/α}, Appendix E) has no built-in: use huberkl.losses.KLLoss"


def _torchvision(s: dict[str, Any], head: str) -> str:
    w, beta, lam, note = _tup(s["coder_weights"]), s["beta"], _py(s["weight"]), s["weight_note"]
    if s["loss"] == "kl":
        loss = _KL_NOTE
    elif s["loss"] == "l1":
        loss = "box_loss = F.l1_loss(pred, target, reduction='sum')"
    else:
        loss = f"box_loss = F.smooth_l1_loss(pred, target, beta={_py(beta)}, reduction='sum')"
    lines = [
        "import torch.nn.functional as F",
        "from torchvision.models.detection._utils import BoxCoder",
    ]
    if head == "rpn":
        lines += [
            f"model.rpn.box_coder = BoxCoder(weights={w})  # 1/σ",
            "# rpn.py hard-codes beta=1/9: override RegionProposalNetwork.compute_loss with",
            loss + "  # / sampled anchors",
            f"losses['loss_rpn_box_reg'] = {lam} * losses['loss_rpn_box_reg']  # {note}",
        ]
    elif head == "roi":
        lines += [
            f"model.roi_heads.box_coder = BoxCoder(weights={w})  # 1/σ (FasterRCNN(bbox_reg_weights=...))",
            "# roi_heads.fastrcnn_loss hard-codes beta=1/9: subclass RoIHeads to use",
            loss + "  # / sampled RoIs",
            f"losses['loss_box_reg'] = {lam} * losses['loss_box_reg']  # {note}",
        ]
    else:
        kind = {"l1": "l1", "huber": "smooth_l1"}.get(s["loss"])
        lines += [
            f"model.box_coder = BoxCoder(weights={w})  # 1/σ, used to decode",
            f"model.head.regression_head.box_coder = BoxCoder(weights={w})  # 1/σ, used to encode",
        ]
        if kind:
            lines.append(f"model.head.regression_head._loss_type = {kind!r}")
        if kind == "smooth_l1" and beta != 1:
            lines.append(
                f"# _box_loss uses beta 1.0 unless given: subclass RetinaNetRegressionHead for beta={_py(beta)}"
            )
        if s["loss"] == "kl":
            lines.append(_KL_NOTE)
        lines.append(f"losses['bbox_regression'] = {lam} * losses['bbox_regression']  # {note}")
    return "\n".join(lines) + "\n"


def _detectron2(s: dict[str, Any], head: str) -> str:
    beta, lam = s["beta"], s["weight"]
    w = "[" + ", ".join(repr(float(v)) for v in s["coder_weights"]) + "]"
    if any(_py(v) != repr(float(v)) for v in s["coder_weights"]):
        w += "  # = [" + ", ".join(str(v) for v in s["coder_weights"]) + "]"
    section = {"rpn": "RPN", "roi": "ROI_BOX_HEAD", "retinanet": "RETINANET"}[head]
    beta_key = "SMOOTH_L1_LOSS_BETA" if head == "retinanet" else "SMOOTH_L1_BETA"
    lines = ["MODEL:", f"  {section}:"]
    if s["loss"] == "kl":
        lines.append("    " + _KL_NOTE)
    lines += [
        "    BBOX_REG_LOSS_TYPE: smooth_l1",
        f"    {beta_key}: {_yaml(beta)}" + ("  # 0 = L1" if beta == 0 else ""),
        f"    BBOX_REG_WEIGHTS: {w}" + ("" if "#" in w else "  # 1/σ"),
    ]
    if head == "retinanet":
        if lam != 1:
            lines.append(f"    # no config key for λ: scale losses['loss_box_reg'] by {_py(lam)}")
    else:
        lines.append(f"    BBOX_REG_LOSS_WEIGHT: {_yaml(lam)}  # {s['weight_note']}")
    return "\n".join(lines) + "\n"


def _mmdetection(s: dict[str, Any], head: str) -> str:
    stds = _lst(s["stds"])
    if s["loss"] == "l1":
        loss = f"dict(type='L1Loss', loss_weight={_py(s['weight'])})"
    else:
        loss = f"dict(type='SmoothL1Loss', beta={_py(s['beta'])}, loss_weight={_py(s['weight'])})"
    coder = (
        f"dict(type='DeltaXYWHBBoxCoder', target_means=[0.0, 0.0, 0.0, 0.0], target_stds={stds})"
    )
    what = "loss_weight = " + s["weight_note"].split(",")[0]
    if s["loss"] != "l1":
        what = "beta = α, " + what
    body = [f"bbox_coder={coder},  # target_stds = σ", f"loss_bbox={loss},  # {what}"]
    if s["loss"] == "kl":
        body.insert(0, _KL_NOTE)
    if head == "roi":
        inner = [
            "roi_head=dict(",
            "    bbox_head=dict(",
            *(" " * 8 + b for b in body),
            "    )",
            "),",
        ]
    else:
        key = "rpn_head" if head == "rpn" else "bbox_head"
        inner = [f"{key}=dict(", *(" " * 4 + b for b in body), "),"]
    return "\n".join(["model = dict(", *(" " * 4 + i for i in inner), ")"]) + "\n"
