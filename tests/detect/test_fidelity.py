"""Issue 5, item 4: our detectors against stock torchvision and against a hand computation.

1. With the ``torchvision-frcnn`` / ``torchvision-retinanet`` presets, the loss dict (keys
   and values) and the gradients equal those of stock ``FasterRCNN`` / ``RetinaNet`` built
   from the same backbone, anchors and weights, on the same images and targets, with the
   samplers seeded alike.
2. With other settings, each stage's box loss equals λ·smooth_l1(β=α) (or |x|, or the
   Appendix E bound) of σ-normalised targets that this file computes itself from the
   anchors/proposals and ground truth (torch's own ``F.smooth_l1_loss``, not ours).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.models.detection import FasterRCNN, RetinaNet
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.rpn import concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign, box_iou

from huberkl.detect.model.backbones import build_backbone
from huberkl.detect.model.detectors import build_model
from huberkl.params import Preset, load_preset
from tests.helpers.detect_tiny import losses_and_grads

C = 3  # object categories, labels 1..C
TINY = dict(
    backbone="tiny",
    tiny_widths=(8, 16, 16, 32),
    fpn_channels=16,
    min_size=64,
    max_size=64,
    representation_size=32,
)
RPN_SIZES = ((16,), (32,), (64,), (128,))
RETINA_SIZES = tuple(
    (s, int(s * 2 ** (1 / 3)), int(s * 2 ** (2 / 3))) for s in (16, 32, 64, 128, 256)
)


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g, dtype=torch.float64) for _ in range(2)]
    targets = [
        {
            "boxes": torch.tensor(
                [[4.0, 6.0, 30.0, 28.0], [20.0, 30.0, 60.0, 62.0]], dtype=torch.float64
            ),
            "labels": torch.tensor([1, 3]),
        },
        {
            "boxes": torch.tensor([[10.0, 8.0, 40.0, 50.0]], dtype=torch.float64),
            "labels": torch.tensor([2]),
        },
    ]
    return images, targets


def _stock(arch: str) -> torch.nn.Module:
    """Stock torchvision detector with the same parts as build_model(TINY)."""
    if arch == "faster_rcnn":
        backbone = build_backbone(
            "tiny", extra="pool", fpn_channels=16, tiny_widths=(8, 16, 16, 32)
        )
        return FasterRCNN(
            backbone,
            num_classes=None,
            min_size=64,
            max_size=64,
            rpn_anchor_generator=AnchorGenerator(RPN_SIZES, ((0.5, 1.0, 2.0),) * 4),
            box_roi_pool=MultiScaleRoIAlign(["0", "1", "2"], 7, 2),
            box_head=TwoMLPHead(16 * 49, 32),
            box_predictor=FastRCNNPredictor(32, C + 1),
        )
    backbone = build_backbone("tiny", extra="p6p7", fpn_channels=16, tiny_widths=(8, 16, 16, 32))
    anchors = AnchorGenerator(RETINA_SIZES, ((0.5, 1.0, 2.0),) * 5)
    head = RetinaNetHead(16, 9, C + 1)
    return RetinaNet(
        backbone,
        C + 1,
        min_size=64,
        max_size=64,
        anchor_generator=anchors,
        head=head,
        detections_per_img=100,
    )


def _losses_and_grads(model: torch.nn.Module, seed: int) -> tuple[dict, dict]:
    return losses_and_grads(model, _batch(), seed)


def _check_stock(arch: str, preset: str) -> None:
    torch.manual_seed(0)
    ours = build_model(dict(TINY, arch=arch), load_preset(preset), C).double()
    stock = _stock(arch).double()
    stock.load_state_dict(ours.state_dict())
    for seed in (0, 1):
        got, got_grads = _losses_and_grads(ours, seed)
        want, want_grads = _losses_and_grads(stock, seed)
        assert list(got) == list(want)  # same keys, same order
        assert_close(got, want)
        assert got_grads.keys() == want_grads.keys()
        assert_close(got_grads, want_grads)


def test_faster_rcnn_equals_stock_torchvision() -> None:
    _check_stock("faster_rcnn", "torchvision-frcnn")


def test_retinanet_equals_stock_torchvision() -> None:
    _check_stock("retinanet", "torchvision-retinanet")


def test_faster_rcnn_detections_equal_stock_torchvision() -> None:
    torch.manual_seed(0)
    ours = build_model(
        dict(TINY, arch="faster_rcnn", score_thresh=0.0), load_preset("torchvision-frcnn"), C
    )
    stock = _stock("faster_rcnn")
    stock.roi_heads.score_thresh = 0.0
    stock.load_state_dict(ours.state_dict())
    images, _ = _batch()
    images = [im.float() for im in images]
    with torch.no_grad():
        got, want = ours.eval()(images), stock.eval()(images)
    assert len(got[0]["boxes"]) > 0
    assert_close(got, want)


# --- other settings: box losses against a computation from scratch ---------------------


def _targets(
    gt: torch.Tensor, anchors: torch.Tensor, sigma: list[float], encoding: str
) -> torch.Tensor:
    """(t − 0)/σ with t_x = (x − x_a)/w_a, t_w = log(w/w_a) or w/w_a − 1 (Eq. 22–28, 89)."""
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    gw, gh = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    tx = ((gt[:, 0] + gt[:, 2]) / 2 - (anchors[:, 0] + anchors[:, 2]) / 2) / aw
    ty = ((gt[:, 1] + gt[:, 3]) / 2 - (anchors[:, 1] + anchors[:, 3]) / 2) / ah
    tw, th = (
        (torch.log(gw / aw), torch.log(gh / ah))
        if encoding == "log"
        else (gw / aw - 1, gh / ah - 1)
    )
    return torch.stack([tx, ty, tw, th], dim=1) / torch.tensor(sigma, dtype=gt.dtype)


def _loss_sum(
    pred: torch.Tensor, target: torch.Tensor, loss: str, alpha: float, lam: float
) -> torch.Tensor:
    x = pred - target
    if loss == "huber":
        return lam * F.smooth_l1_loss(pred, target, beta=alpha, reduction="sum")
    if loss == "l1":
        return lam * x.abs().sum()
    a = alpha / 2  # Appendix E: λ/α·D_{α/2,1/α}(x) = λ·(α/2·e^{−2|x|/α} + |x| − α/2)
    return lam * (a * torch.exp(-x.abs() / a) + x.abs() - a).sum()


class _Capture:
    """Forward hooks that keep a module's inputs or outputs."""

    def __init__(self) -> None:
        self.data: dict[str, object] = {}

    def output(self, name: str):
        def hook(_m, _args, out):
            self.data[name] = out

        return hook

    def inputs(self, name: str):
        def hook(_m, args, _out):
            self.data[name] = args

        return hook


def _preset(loss: str, alpha: str, lam_p: str, lam_d: str, sigma: dict) -> Preset:
    stage = lambda lam: {"loss": loss, "alpha": alpha, "lam": lam, "sigma": sigma}  # noqa: E731
    return Preset.from_mapping(
        {"name": "t", "stages": {"proposal": stage(lam_p), "detection": stage(lam_d)}}
    )


SIGMA = {"x": "1/20", "y": "1/20", "w": "1/10", "h": "1/10"}
SETTINGS = [
    ("exp-a", "log"),
    ("exp-a", "linear"),
    ("implementation", "linear"),
    ("kl", "log"),
    ("l1", "linear"),
]


def _settings(name: str) -> Preset:
    if name == "kl":
        return _preset("kl", "1/2", "1/4", "1/2", SIGMA)
    if name == "l1":
        return _preset("l1", "0", "2", "1/3", SIGMA)
    return load_preset(name)


def _sigma(stage) -> list[float]:
    return [float(stage.sigma[c]) for c in "xywh"]


def test_faster_rcnn_box_losses_match_direct_computation() -> None:
    for name, encoding in SETTINGS:
        preset = _settings(name)
        torch.manual_seed(0)
        # Samplers large enough to keep every labelled anchor, so the RPN normaliser is known.
        cfg = dict(
            TINY,
            arch="faster_rcnn",
            target_encoding=encoding,
            rpn_batch_size_per_image=100000,
            rpn_positive_fraction=1.0,
        )
        model = build_model(cfg, preset, C).double().train()
        cap = _Capture()
        model.transform.register_forward_hook(cap.output("transform"))
        model.rpn.head.register_forward_hook(cap.output("rpn_head"))
        model.rpn.anchor_generator.register_forward_hook(cap.output("anchors"))
        model.roi_heads.box_roi_pool.register_forward_hook(cap.inputs("roi_pool"))
        model.roi_heads.box_predictor.register_forward_hook(cap.output("predictor"))
        images, targets = _batch()
        losses = model(images, targets)
        targets = cap.data["transform"][1]

        # RPN: every anchor matched as torchvision's Matcher(0.7, 0.3, low-quality) does.
        stage = preset.stage("proposal")
        objectness, deltas = cap.data["rpn_head"]
        _, deltas = concat_box_prediction_layers(objectness, deltas)
        matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
        total, sampled = 0.0, 0
        for i, (anchors, t) in enumerate(zip(cap.data["anchors"], targets, strict=True)):
            idx = matcher(box_iou(t["boxes"], anchors))
            pos = idx >= 0
            sampled += int(pos.sum()) + int((idx == Matcher.BELOW_LOW_THRESHOLD).sum())
            enc = _targets(t["boxes"][idx[pos]], anchors[pos], _sigma(stage), encoding)
            pred = deltas.view(len(targets), -1, 4)[i][pos]
            total = total + _loss_sum(pred, enc, stage.loss, float(stage.alpha), float(stage.lam))
        assert_close(losses["loss_rpn_box_reg"].detach(), total / sampled)

        # ROI heads: the sampled proposals, labelled by IoU >= 0.5 with a ground-truth box.
        stage = preset.stage("detection")
        proposals = cap.data["roi_pool"][1]
        _, box_reg = cap.data["predictor"]
        box_reg = box_reg.view(box_reg.shape[0], -1, 4)
        total, row = 0.0, 0
        for props, t in zip(proposals, targets, strict=True):
            iou, idx = box_iou(t["boxes"], props).max(dim=0)
            pos = iou >= 0.5
            rows = torch.arange(row, row + len(props))[pos]
            enc = _targets(t["boxes"][idx[pos]], props[pos], _sigma(stage), encoding)
            pred = box_reg[rows, t["labels"][idx[pos]]]
            total = total + _loss_sum(pred, enc, stage.loss, float(stage.alpha), float(stage.lam))
            row += len(props)
        assert int(pos.sum()) > 0
        assert_close(losses["loss_box_reg"].detach(), total / row)


def test_retinanet_box_loss_matches_direct_computation() -> None:
    for name, encoding in SETTINGS:
        preset = _settings(name)
        torch.manual_seed(0)
        model = (
            build_model(dict(TINY, arch="retinanet", target_encoding=encoding), preset, C)
            .double()
            .train()
        )
        cap = _Capture()
        model.transform.register_forward_hook(cap.output("transform"))
        model.head.regression_head.register_forward_hook(cap.output("reg"))
        model.anchor_generator.register_forward_hook(cap.output("anchors"))
        images, targets = _batch()
        losses = model(images, targets)
        targets = cap.data["transform"][1]
        stage = preset.stage("proposal")
        matcher = Matcher(0.5, 0.4, allow_low_quality_matches=True)
        per_image = []
        for pred, anchors, t in zip(cap.data["reg"], cap.data["anchors"], targets, strict=True):
            idx = matcher(box_iou(t["boxes"], anchors))
            fg = idx >= 0
            enc = _targets(t["boxes"][idx[fg]], anchors[fg], _sigma(stage), encoding)
            loss = _loss_sum(pred[fg], enc, stage.loss, float(stage.alpha), float(stage.lam))
            per_image.append(loss / max(1, int(fg.sum())))
        assert_close(losses["bbox_regression"].detach(), sum(per_image) / len(per_image))
