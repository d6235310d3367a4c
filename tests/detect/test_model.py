"""Detector building blocks: box loss, box coders, backbones, build_model, weights files."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.testing import assert_close
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops.misc import FrozenBatchNorm2d

from huberkl.detect.model.backbones import build_backbone, count_parameters
from huberkl.detect.model.boxloss import BoxLoss, LinearBoxCoder, make_box_coder
from huberkl.detect.model.detectors import HuberKLRetinaNet, ModelConfig, build_model
from huberkl.detect.model.heads import HuberKLRegressionHead, HuberKLRoIHeads, HuberKLRPN
from huberkl.detect.model.weights import load_into
from huberkl.errors import InputError
from huberkl.losses import huber_upper_bound, smooth_l1
from huberkl.params import Preset, StageParams, load_preset

C = 3
TINY = dict(
    tiny_widths=(8, 16, 16, 32), fpn_channels=16, min_size=64, max_size=64, representation_size=32
)


def _batch(empty: bool = False) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(3)
    images = [torch.rand(3, 64, 64, generator=g) for _ in range(2)]
    boxes = [
        torch.tensor([[4.0, 6.0, 30.0, 28.0], [20.0, 30.0, 60.0, 62.0]]),
        torch.tensor([[10.0, 8.0, 40.0, 50.0]]),
    ]
    labels = [torch.tensor([1, 3]), torch.tensor([2])]
    if empty:
        boxes = [torch.zeros((0, 4)) for _ in boxes]
        labels = [torch.zeros((0,), dtype=torch.int64) for _ in labels]
    return images, [{"boxes": b, "labels": lab} for b, lab in zip(boxes, labels, strict=True)]


# --- box loss ---------------------------------------------------------------------------


def _stage(**kw) -> StageParams:
    return StageParams.from_mapping(kw)


def test_box_loss_huber_is_weighted_smooth_l1_in_both_forms() -> None:
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    zero = torch.zeros_like(x)
    s = _stage(loss="huber", alpha="1/3", lam="2")
    # smooth-l1 form: (λ/α)·H_α = λ·smooth_l1(β=α)
    assert_close(
        BoxLoss.from_stage(s)(x, zero), 2 * F.smooth_l1_loss(x, zero, beta=1 / 3, reduction="sum")
    )
    # huber (publication) form: λ·H_α, torch's huber_loss(delta=α)
    assert_close(
        BoxLoss.from_stage(s, "huber")(x, zero),
        2 * F.huber_loss(x, zero, delta=1 / 3, reduction="sum"),
    )
    pub = load_preset("publication").stage("proposal")
    assert BoxLoss.from_stage(pub, "huber").weight == 10.0


def test_box_loss_l1_and_kl() -> None:
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    zero = torch.zeros_like(x)
    assert_close(BoxLoss.from_stage(_stage(loss="l1", lam="3"))(x, zero), 3 * x.abs().sum())
    kl = BoxLoss.from_stage(_stage(loss="kl", alpha="1/2", lam="3"))
    huber = BoxLoss.from_stage(_stage(loss="huber", alpha="1/2", lam="3"))
    # Appendix E: the upper bound D_{α/2,1/α} of H_α, scaled like the huber loss (Eq. 20).
    a = 0.25
    assert_close(kl.elementwise(x), 3 * (a * torch.exp(-x.abs() / a) + x.abs() - a))
    assert bool((kl.elementwise(x) >= huber.elementwise(x) - 1e-12).all())
    assert float((kl.elementwise(x) - huber.elementwise(x)).max()) > 1e-3
    far = torch.tensor([40.0], dtype=torch.float64)
    assert_close(kl.elementwise(far), huber.elementwise(far))


def test_box_loss_is_the_library_loss() -> None:
    """The fused torch path equals huberkl.losses; kl is (w/α)·D_{α/2,1/α} (Eq. 20)."""
    g = torch.Generator().manual_seed(0)
    pred, target = (
        torch.randn(50, 4, generator=g, dtype=torch.float64) * 2,
        torch.randn(50, 4, generator=g, dtype=torch.float64),
    )
    for loss, alpha in (("huber", "1/9"), ("huber", "2"), ("l1", "0"), ("kl", "1/3")):
        box = BoxLoss.from_stage(_stage(loss=loss, alpha=alpha, lam="3/2"))
        a = float(Fraction(alpha))
        if loss == "kl":
            want = 1.5 / a * huber_upper_bound(pred - target, a, reduction="sum")
        else:
            want = 1.5 * smooth_l1(pred - target, a, reduction="sum")
        assert_close(box(pred, target), want)
        assert_close(box.elementwise(pred - target).sum(), want)


def test_box_loss_rejects_bad_settings() -> None:
    with pytest.raises(InputError, match="loss"):
        BoxLoss("mse")
    with pytest.raises(InputError, match="form"):
        BoxLoss.from_stage(_stage(), "smooth")


# --- box coders -------------------------------------------------------------------------


def test_box_coder_weights_are_one_over_sigma() -> None:
    s = load_preset("exp-a").stage("proposal")
    coder = make_box_coder(s, "log")
    assert type(coder) is BoxCoder and coder.weights == (20.0, 20.0, 10.0, 10.0)
    assert isinstance(make_box_coder(s, "linear"), LinearBoxCoder)
    with pytest.raises(InputError, match="target_encoding"):
        make_box_coder(s, "sqrt")


def test_linear_coder_encodes_appendix_d_targets_and_decodes_back() -> None:
    anchors = torch.tensor([[0.0, 0.0, 10.0, 20.0], [5.0, 5.0, 45.0, 25.0]], dtype=torch.float64)
    gt = torch.tensor([[1.0, 2.0, 13.0, 18.0], [0.0, 10.0, 30.0, 40.0]], dtype=torch.float64)
    coder = LinearBoxCoder(weights=(20.0, 20.0, 10.0, 10.0))
    t = coder.encode_single(gt, anchors)
    want = torch.tensor(
        [
            [20 * (7 - 5) / 10, 20 * (10 - 10) / 20, 10 * (12 / 10 - 1), 10 * (16 / 20 - 1)],
            [20 * (15 - 25) / 40, 20 * (25 - 15) / 20, 10 * (30 / 40 - 1), 10 * (30 / 20 - 1)],
        ],
        dtype=torch.float64,
    )
    assert_close(t, want)
    assert_close(coder.decode_single(t, anchors), gt)
    assert_close(coder.decode(t, [anchors]).reshape(-1, 4), gt)
    # a predicted scale below zero gives an empty box, never a flipped one
    squashed = coder.decode_single(
        torch.tensor([[0.0, 0.0, -30.0, -30.0]], dtype=torch.float64), anchors[:1]
    )
    assert_close(squashed, torch.tensor([[5.0, 10.0, 5.0, 10.0]], dtype=torch.float64))


# --- models -----------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_tiny_model_trains_and_detects_labels_1_to_c(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        dict(TINY, arch=arch, retinanet_head_norm="group", score_thresh=0.001),
        load_preset("exp-a"),
        C,
    )
    images, targets = _batch()
    losses = model.train()(images, targets)
    keys = {
        "faster_rcnn": {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"},
        "retinanet": {"classification", "bbox_regression"},
    }[arch]
    assert set(losses) == keys
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.backbone.body.parameters())
    if arch == "retinanet":  # push the unused logit 0 up: it must still never be output
        model.head.classification_head.cls_logits.bias.data.view(-1, C + 1)[:, 0] = 10.0
    with torch.no_grad():
        out = model.eval()(images)
    assert len(out) == 2 and sum(len(d["boxes"]) for d in out) > 0
    for d in out:
        assert d["boxes"].shape[1] == 4 and len(d["labels"]) == len(d["scores"]) <= 100
        assert bool(((d["labels"] >= 1) & (d["labels"] <= C)).all())


@pytest.mark.parametrize("arch", ["faster_rcnn", "retinanet"])
def test_images_without_objects_have_zero_box_loss(arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(dict(TINY, arch=arch), load_preset("implementation"), C).train()
    losses = model(*_batch(empty=True))
    box_keys = {
        "faster_rcnn": ["loss_box_reg", "loss_rpn_box_reg"],
        "retinanet": ["bbox_regression"],
    }[arch]
    for k in box_keys:
        assert losses[k].item() == 0.0


def test_stages_get_their_own_settings() -> None:
    preset = load_preset("exp-a")
    frcnn = build_model(dict(TINY, target_encoding="linear"), preset, C)
    assert isinstance(frcnn.rpn, HuberKLRPN) and isinstance(frcnn.roi_heads, HuberKLRoIHeads)
    assert frcnn.rpn.box_loss.weight == 0.25 and frcnn.roi_heads.box_loss.weight == 0.5
    assert isinstance(frcnn.rpn.box_coder, LinearBoxCoder) and isinstance(
        frcnn.roi_heads.box_coder, LinearBoxCoder
    )
    assert frcnn.rpn.box_coder.weights == (20.0, 20.0, 10.0, 10.0)
    retina = build_model(
        dict(TINY, arch="retinanet", target_encoding="linear"), load_preset("exp-b"), C
    )
    assert isinstance(retina, HuberKLRetinaNet)
    assert isinstance(retina.head.regression_head, HuberKLRegressionHead)
    # torchvision keeps two coders (loss and decoding); ours are one object
    assert retina.box_coder is retina.head.regression_head.box_coder
    assert (
        isinstance(retina.box_coder, LinearBoxCoder)
        and retina.head.regression_head.box_loss.weight == 0.5
    )
    assert retina.head.classification_head.num_classes == C + 1


def test_model_config_from_omegaconf_and_bad_keys() -> None:
    node = OmegaConf.create(
        {
            "arch": "retinanet",
            "anchor_sizes": [16, 32, 64, 128, 256],
            "tiny_widths": [8, 16, 16, 32],
        }
    )
    cfg = ModelConfig.from_mapping(node)
    assert cfg.anchor_sizes == (16, 32, 64, 128, 256) and cfg.tiny_widths == (8, 16, 16, 32)
    with pytest.raises(InputError, match="unknown model key"):
        ModelConfig.from_mapping({"archh": "retinanet"})
    with pytest.raises(InputError, match="arch must be one of"):
        ModelConfig(arch="yolo")
    with pytest.raises(InputError, match="backbone must be one of"):
        ModelConfig(backbone="resnet101")
    with pytest.raises(InputError, match="one entry per pyramid level"):
        build_model(dict(TINY, anchor_sizes=[16, 32]), load_preset("implementation"), C)
    with pytest.raises(InputError, match="num_classes"):
        build_model(TINY, load_preset("implementation"), 0)


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("score_thresh", "abc", "in [0, 1]"),
        ("score_thresh", -3, "in [0, 1]"),
        ("nms_thresh", 1.5, "in [0, 1]"),
        ("rpn_fg_iou_thresh", float("nan"), "in [0, 1]"),
        ("fpn_channels", "abc", "integer >= 1"),
        ("fpn_channels", 0, "integer >= 1"),
        ("detections_per_img", 2.5, "integer >= 1"),
        ("min_size", True, "integer >= 1"),
        ("trainable_layers", -1, "integer >= 0"),
        ("frozen_bn", "yes", "true or false"),
        ("tiny_widths", (8, "x", 16, 32), "integers >= 1"),
        ("aspect_ratios", ("a",), "positive numbers"),
    ],
)
def test_model_config_names_a_bad_value_and_what_is_allowed(key, value, allowed) -> None:
    """Values are checked before the model uses them: no TypeError from deep in torchvision."""
    with pytest.raises(InputError) as info:
        ModelConfig.from_mapping({key: value})
    assert str(info.value).startswith(key) and allowed in str(info.value)
    assert repr(value) in str(info.value) or str(value) in str(info.value)


def test_model_config_takes_integers_for_thresholds_and_null_fpn() -> None:
    cfg = ModelConfig.from_mapping({"score_thresh": 0, "nms_thresh": 1, "fpn_channels": None})
    assert cfg.score_thresh == 0 and cfg.fpn_channels is None
    # numpy scalars (a config built from arrays) are numbers; bools and NaN are not
    cfg = ModelConfig.from_mapping({"fpn_channels": np.int64(64), "score_thresh": np.float32(0.5)})
    assert cfg.fpn_channels == 64
    for key, value in (("fpn_channels", True), ("score_thresh", float("nan"))):
        with pytest.raises(InputError, match=key):
            ModelConfig.from_mapping({key: value})


def test_explicit_anchor_sizes_and_retinanet_octaves() -> None:
    model = build_model(
        dict(TINY, arch="retinanet", anchor_sizes=[12, 24, 48, 96, 192]),
        load_preset("implementation"),
        C,
    )
    assert model.anchor_generator.sizes[0] == (12, 15, 19)
    model = build_model(
        dict(TINY, anchor_sizes=[[12, 20], [24, 40], [48, 80], [96, 160]]),
        load_preset("implementation"),
        C,
    )
    assert model.rpn.anchor_generator.sizes[1] == (24, 40)
    assert model.rpn.anchor_generator.num_anchors_per_location()[0] == 6


@pytest.mark.parametrize(
    ("backbone", "arch"),
    [("resnet18", "faster_rcnn"), ("mobilenet_v3", "retinanet"), ("vgg16", "faster_rcnn")],
)
def test_torchvision_backbones_run_from_scratch(backbone: str, arch: str) -> None:
    torch.manual_seed(0)
    model = build_model(
        {
            "backbone": backbone,
            "arch": arch,
            "min_size": 64,
            "max_size": 64,
            "fpn_channels": 32,
            "representation_size": 32,
        },
        load_preset("implementation"),
        C,
    )
    # from scratch: every parameter trains and BatchNorm is ordinary, not frozen
    assert count_parameters(model, trainable_only=True) == count_parameters(model)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())
    with torch.no_grad():
        out = model.eval()([torch.rand(3, 64, 64)])
    assert out[0]["boxes"].shape[-1] == 4


def test_resnet_fpn_levels_widths_and_freezing() -> None:
    r50 = build_backbone("resnet50", extra="p6p7", fpn_channels=64)
    assert r50.out_channels == 64 and r50.level_names == ["0", "1", "2", "p6", "p7"]
    assert r50.strides == [8, 16, 32, 64, 128]
    r34 = build_backbone("resnet34", extra="pool", frozen_bn=True, trainable_layers=3)
    assert r34.level_names == ["0", "1", "2", "3", "pool"] and r34.strides == [4, 8, 16, 32, 64]
    assert any(isinstance(m, FrozenBatchNorm2d) for m in r34.modules())
    frozen = [n for n, p in r34.body.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "layer1")) for n in frozen)
    with pytest.raises(InputError, match="trainable_layers"):
        build_backbone("resnet18", trainable_layers=7)


def test_tiny_backbone_width_is_configurable() -> None:
    small = build_backbone("tiny", fpn_channels=16, tiny_widths=(8, 16, 16, 32))
    feats = small(torch.rand(1, 3, 64, 64))
    assert [tuple(v.shape[-2:]) for v in feats.values()] == [(8, 8), (4, 4), (2, 2), (1, 1)]
    assert all(v.shape[1] == 16 for v in feats.values())
    default = build_backbone("tiny", fpn_channels=96)
    assert 2_000_000 < count_parameters(default) < 4_000_000
    with pytest.raises(InputError, match="tiny_widths"):
        build_backbone("tiny", tiny_widths=(8, 16))


# --- weights files ----------------------------------------------------------------------


def test_load_weights_round_trip_and_checkpoint_dict(tmp_path) -> None:
    torch.manual_seed(0)
    a = build_model(TINY, load_preset("implementation"), C)
    path = tmp_path / "w.pt"
    torch.save({"model": a.state_dict(), "iteration": 3}, path)
    torch.manual_seed(1)
    b = build_model(dict(TINY, weights=str(path)), load_preset("implementation"), C)
    assert_close(b.state_dict(), a.state_dict())


def test_weights_from_another_architecture_name_the_file(tmp_path) -> None:
    retina = build_model(dict(TINY, arch="retinanet"), load_preset("implementation"), C)
    path = tmp_path / "retina.pt"
    torch.save(retina.state_dict(), path)
    frcnn = build_model(TINY, load_preset("implementation"), C)
    with pytest.raises(InputError, match=r"retina\.pt.*missing key"):
        load_into(frcnn, path, "weights")
    five = tmp_path / "five.pt"
    torch.save(build_model(TINY, load_preset("implementation"), 5).state_dict(), five)
    with pytest.raises(InputError, match=r"five\.pt.*shape mismatch"):
        load_into(frcnn, five, "weights")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint", encoding="utf-8")
    with pytest.raises(InputError, match=r"junk\.pt.*not a readable"):
        load_into(frcnn, junk, "weights")
    with pytest.raises(InputError, match=r"nope\.pt.*does not exist"):
        build_model(dict(TINY, weights=str(tmp_path / "nope.pt")), load_preset("implementation"), C)


def test_single_stage_preset_serves_both_faster_rcnn_stages() -> None:
    preset = Preset.from_mapping(
        {"name": "one", "stages": {"proposal": {"loss": "kl", "alpha": "1/9", "lam": "2"}}}
    )
    model = build_model(TINY, preset, C)
    assert model.rpn.box_loss.loss == "kl" and model.roi_heads.box_loss.loss == "kl"
    assert math.isclose(model.roi_heads.box_loss.alpha, 1 / 9)


def test_backbone_weights_from_a_local_classification_file(tmp_path) -> None:
    import torchvision

    net = torchvision.models.resnet18()
    path = tmp_path / "resnet18-local.pth"
    torch.save(net.state_dict(), path)
    body = build_backbone("resnet18", weights_path=path, frozen_bn=True, trainable_layers=3).body
    assert torch.equal(body.conv1.weight, net.conv1.weight)
    assert torch.equal(body.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)
    with pytest.raises(InputError, match=r"resnet18-local\.pth.*does not match"):
        build_backbone("resnet34", weights_path=path)
    with pytest.raises(InputError, match=r"resnet18-local\.pth.*does not match"):
        build_backbone("vgg16", weights_path=path)


def test_a_checkpoints_model_needs_no_weight_files(tmp_path):
    """The checkpoint holds every tensor: the files its config named need not be here."""
    from huberkl.detect.training import checkpoint as ckpt

    preset = load_preset("implementation")
    torch.manual_seed(0)
    trained = build_model(TINY, preset, C)
    state = {"arch": ckpt.architecture(trained, C), "model": trained.state_dict()}
    named = dict(TINY, weights=str(tmp_path / "gone.pth"))
    with pytest.raises(InputError, match="gone.pth"):
        build_model(named, preset, C)  # training would need the file
    model = ckpt.build_from_checkpoint(named, preset, C, state, tmp_path / "checkpoint.pt")
    for k, v in trained.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    wrong = {**state, "arch": {**state["arch"], "num_classes": C + 1}}
    with pytest.raises(InputError, match="another architecture"):
        ckpt.build_from_checkpoint(named, preset, C, wrong, tmp_path / "checkpoint.pt")


def test_backbone_init_takes_the_backbone_and_leaves_the_heads(tmp_path) -> None:
    """A pretext detector's backbone starts another model; its heads keep their own start,
    and a RetinaNet takes a Faster R-CNN backbone with fresh P6/P7."""
    torch.manual_seed(0)
    pre = build_model(TINY, load_preset("implementation"), 5)  # another class count: heads differ
    path = tmp_path / "pre.pt"
    torch.save({"model": pre.state_dict(), "iteration": 9}, path)
    torch.manual_seed(1)
    fresh = build_model(TINY, load_preset("exp-a"), C)
    torch.manual_seed(1)
    m = build_model(dict(TINY, backbone_init=str(path)), load_preset("exp-a"), C)
    assert_close(m.backbone.state_dict(), pre.backbone.state_dict())
    assert_close(m.roi_heads.state_dict(), fresh.roi_heads.state_dict())
    assert_close(m.rpn.state_dict(), fresh.rpn.state_dict())
    retina = build_model(dict(TINY, arch="retinanet", backbone_init=str(path)), "implementation", C)
    body = {k: v for k, v in retina.backbone.state_dict().items() if "extra_blocks" not in k}
    assert_close(body, {k: pre.backbone.state_dict()[k] for k in body})
    wide = tmp_path / "wide.pt"
    torch.save(build_model(dict(TINY, fpn_channels=8), "implementation", C).state_dict(), wide)
    with pytest.raises(InputError, match=r"backbone_init.*wide\.pt.*shape"):
        build_model(dict(TINY, backbone_init=str(wide)), "implementation", C)
