"""``apply_params`` on detectors built with torchvision itself, not with ``build_model``.

1. With the ``torchvision-frcnn`` / ``torchvision-retinanet`` presets, a copy given the
   preset returns exactly the untouched model's loss dict and gradients (float64).
2. With other presets, each box loss equals the preset's λ·H (or λ|x|) of targets that
   this file encodes itself with torchvision's ``BoxCoder(weights=1/σ)`` from the anchors
   and proposals the model matched, divided by torchvision's normaliser.
3. ``huberkl.losses`` and ``apply_params`` import and run without Hydra, OmegaConf,
   Typer, pandas or matplotlib (a fresh interpreter's ``sys.modules``).
4. The example of docs/DETECTION.md runs as written.
5. ``build_model`` goes through ``apply_params``.
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torchvision.models import detection
from torchvision.models.detection import FasterRCNN, KeypointRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection._utils import BoxCoder
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.retinanet import RetinaNetHead
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign

from huberkl.detect import apply_params
from huberkl.detect.model.heads import HuberKLRegressionHead, HuberKLRoIHeads, HuberKLRPN
from huberkl.errors import InputError
from huberkl.params import Preset, StageParams, load_preset
from tests.helpers import REPO
from tests.helpers.detect_tiny import losses_and_grads

EPS = torch.finfo(torch.float64).eps
NUM_CLASSES = 4  # torchvision's convention: background + 3 categories


def _batch() -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 64, 64, generator=g, dtype=torch.float64) for _ in range(2)]
    boxes = [[[4.0, 6.0, 30.0, 28.0], [20.0, 30.0, 60.0, 62.0]], [[10.0, 8.0, 40.0, 50.0]]]
    labels = [[1, 3], [2]]
    targets = []
    for b, lab in zip(boxes, labels, strict=True):
        box = torch.tensor(b, dtype=torch.float64)
        masks = torch.zeros(len(b), 64, 64, dtype=torch.uint8)  # box-shaped masks
        for m, (x0, y0, x1, y1) in zip(masks, box.int().tolist(), strict=True):
            m[y0:y1, x0:x1] = 1
        centre = (box[:, :2] + box[:, 2:]) / 2  # keypoints: two corners and the centre
        points = torch.stack([box[:, :2] + 1, centre, box[:, 2:] - 1], dim=1)
        keypoints = torch.cat([points, torch.ones(len(b), 3, 1, dtype=torch.float64)], dim=2)
        targets.append(
            {
                "boxes": box,
                "labels": torch.tensor(lab),
                "masks": masks,
                "keypoints": keypoints.float(),
            }
        )
    return images, targets


def _tiny_backbone() -> nn.Module:
    """A user's own backbone: one feature map at stride 4 (torchvision's documented way)."""
    body = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
    )
    body.out_channels = 16
    return body


def _two_stage_parts() -> dict:
    """What the tiny Faster/Mask/Keypoint R-CNN share: 64-px images, one feature map."""
    return dict(
        min_size=64,
        max_size=64,
        rpn_anchor_generator=AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MultiScaleRoIAlign(["0"], 7, 2),
    )


def tiny_frcnn() -> FasterRCNN:
    return FasterRCNN(_tiny_backbone(), num_classes=NUM_CLASSES, **_two_stage_parts())


def tiny_maskrcnn() -> MaskRCNN:
    return MaskRCNN(
        _tiny_backbone(),
        num_classes=None,  # given by the predictors
        box_predictor=FastRCNNPredictor(1024, NUM_CLASSES),
        **_two_stage_parts(),
        mask_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        mask_head=MaskRCNNHeads(16, (16, 16), 1),
        mask_predictor=MaskRCNNPredictor(16, 16, NUM_CLASSES),
    )


def tiny_keypointrcnn() -> KeypointRCNN:
    return KeypointRCNN(
        _tiny_backbone(),
        num_classes=None,  # given by the predictors
        box_predictor=FastRCNNPredictor(1024, NUM_CLASSES),
        **_two_stage_parts(),
        keypoint_roi_pool=MultiScaleRoIAlign(["0"], 14, 2),
        keypoint_head=KeypointRCNNHeads(16, (16, 16)),
        keypoint_predictor=KeypointRCNNPredictor(16, 3),
    )


def tiny_retinanet() -> RetinaNet:
    anchors = AnchorGenerator(((16, 32, 64),), ((0.5, 1.0, 2.0),))
    return RetinaNet(
        _tiny_backbone(), NUM_CLASSES, min_size=64, max_size=64, anchor_generator=anchors
    )


def _zoo(name: str) -> Callable[[], nn.Module]:
    """torchvision's own model builders, random weights, 64-px images."""
    fn = getattr(detection, name)
    return lambda: fn(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES, min_size=64, max_size=64
    )


FRCNN = {
    "tiny": tiny_frcnn,
    "tiny-mask": tiny_maskrcnn,
    "tiny-keypoint": tiny_keypointrcnn,
    "resnet50_fpn": _zoo("fasterrcnn_resnet50_fpn"),
    "mobilenet_v3_large_fpn": _zoo("fasterrcnn_mobilenet_v3_large_fpn"),
}
RETINA = {"tiny": tiny_retinanet, "resnet50_fpn": _zoo("retinanet_resnet50_fpn")}
MODELS = [(f"frcnn-{k}", v, "torchvision-frcnn") for k, v in FRCNN.items()] + [
    (f"retinanet-{k}", v, "torchvision-retinanet") for k, v in RETINA.items()
]
# The zoo models in float64 with gradients take 20-40 s each on 2 cores: `make test-slow`.
# The default suite keeps the tiny ones and the README example (resnet50 FPN).
_ZOO = ("resnet50_fpn", "mobilenet_v3_large_fpn")
MODEL_PARAMS = [
    pytest.param(*m, id=m[0], marks=[pytest.mark.slow] if m[0].endswith(_ZOO) else [])
    for m in MODELS
]


def _losses_and_grads(model: nn.Module, seed: int) -> tuple[dict, dict]:
    return losses_and_grads(model, _batch(), seed)


def _assert_equal(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k


# --- 1. torchvision presets: nothing changes -------------------------------------------


@pytest.mark.parametrize(("name", "build", "preset"), MODEL_PARAMS)
def test_torchvision_preset_keeps_loss_dict_and_gradients(
    name: str, build: Callable[[], nn.Module], preset: str
) -> None:
    torch.manual_seed(0)
    stock = build().double()
    applied = copy.deepcopy(stock)
    assert apply_params(applied, preset) is applied
    stage = applied.rpn if name.startswith("frcnn") else applied.head.regression_head
    assert isinstance(stage, (HuberKLRPN, HuberKLRegressionHead))  # it did change the stage
    want_state, got_state = stock.state_dict(), applied.state_dict()
    assert list(got_state) == list(want_state)
    assert all(torch.equal(got_state[k], want_state[k]) for k in want_state)
    # Same float64 operations in the same order (torch's fused smooth_l1/l1 with the same
    # beta, coder weights and normaliser), so the results are bit-identical. Two sampler
    # seeds for the tiny models, one for torchvision's full-size ones (time).
    for seed in (0, 1) if "tiny" in name else (0,):
        got, got_grads = _losses_and_grads(applied, seed)
        want, want_grads = _losses_and_grads(stock, seed)
        assert all(v > 0 for v in want.values())
        assert ("loss_mask" in want) == ("mask" in name)  # mask/keypoint losses kept
        assert ("loss_keypoint" in want) == ("keypoint" in name)
        _assert_equal(got, want)
        _assert_equal(got_grads, want_grads)
    if "tiny" not in name:
        return
    # and the comparison can fail: another preset changes the box losses
    other, _ = _losses_and_grads(apply_params(applied, "exp-c"), 0)
    box_keys = (
        ["loss_rpn_box_reg", "loss_box_reg"] if "loss_box_reg" in other else ["bbox_regression"]
    )
    assert all(not torch.equal(other[k], want[k]) for k in box_keys)


def test_retinanet_v2_giou_head_gets_the_preset_loss() -> None:
    """torchvision's v2 RetinaNet trains its boxes with GIoU; a preset replaces that loss."""
    model = detection.retinanet_resnet50_fpn_v2(
        weights=None, weights_backbone=None, num_classes=NUM_CLASSES
    )
    keys = list(model.state_dict())
    apply_params(model, "torchvision-retinanet")
    assert list(model.state_dict()) == keys
    assert model.head.regression_head.box_loss.loss == "l1"
    assert model.box_coder is model.head.regression_head.box_coder


# --- 2. other presets: λ·H of σ-normalised targets, computed here -----------------------


def _rho(stage: StageParams, form: str, x: torch.Tensor) -> torch.Tensor:
    """Per-coordinate loss: (λ/α)·H_α (smooth-l1 form), λ·H_α (huber form), λ|x| (l1).

    H_α(x) = x²/2 for |x| ≤ α, else α(|x| − α/2) (Eq. 4; docs/EQUATIONS.md).
    """
    lam, alpha = float(stage.lam), float(stage.alpha)
    if stage.loss == "l1":
        return lam * x.abs()
    h = torch.where(x.abs() <= alpha, x**2 / 2, alpha * (x.abs() - alpha / 2))
    return lam * h if form == "huber" else lam / alpha * h


def _coder(stage: StageParams) -> BoxCoder:
    return BoxCoder(weights=tuple(1.0 / float(stage.sigma[c]) for c in "xywh"))


def _close(got: torch.Tensor, want: torch.Tensor, terms: int) -> None:
    """Sums of ``terms`` non-negative float64 numbers in another order, a few roundings
    each: they differ by at most about (terms + 8)·eps relative (Higham, Sec. 4.2)."""
    got, want = float(got.detach()), float(want.detach())
    assert want > 0
    assert abs(got - want) <= (terms + 8) * EPS * want


class _Record:
    """Calls ``fn`` and keeps every result (stands in for a method or a sampler)."""

    def __init__(self, fn: Callable) -> None:
        self.fn, self.out = fn, []

    def __call__(self, *args):
        self.out.append(self.fn(*args))
        return self.out[-1]


def _keep_output(module: nn.Module) -> list:
    out: list = []
    module.register_forward_hook(lambda _m, _a, o: out.append(o))
    return out


FRCNN_PRESETS = ["exp-c", "publication", "mmdet-frcnn", "implementation"]


# Every preset on the tiny model; on the zoo's mobilenet (25-80 s each in float64) one
# preset in the default suite and the others in `make test-slow`.
ARCH_PRESETS = [
    pytest.param(
        arch,
        name,
        marks=[pytest.mark.slow] if arch != "tiny" and name != FRCNN_PRESETS[0] else [],
        id=f"{arch}-{name}",
    )
    for arch in ("tiny", "mobilenet_v3_large_fpn")
    for name in FRCNN_PRESETS
]


@pytest.mark.parametrize(("arch", "preset_name"), ARCH_PRESETS)
def test_faster_rcnn_box_losses_are_lambda_h_of_normalised_targets(
    arch: str, preset_name: str
) -> None:
    torch.manual_seed(0)
    preset = load_preset(preset_name)
    model = apply_params(FRCNN[arch]().double(), preset).train()
    rpn, roi = model.rpn, model.roi_heads
    transformed = _keep_output(model.transform)
    anchors = _keep_output(rpn.anchor_generator)
    rpn_head = _keep_output(rpn.head)
    predictor = _keep_output(roi.box_predictor)
    rpn.assign_targets_to_anchors = _Record(rpn.assign_targets_to_anchors)
    rpn.fg_bg_sampler = _Record(rpn.fg_bg_sampler)
    roi.select_training_samples = _Record(roi.select_training_samples)
    losses = model(*_batch())
    targets = transformed[0][1]

    # RPN: the sampled positive anchors and their matched boxes; / all sampled anchors.
    stage = preset.stage("proposal")
    _, matched_gt = rpn.assign_targets_to_anchors.out[0]
    pos_masks, neg_masks = rpn.fg_bg_sampler.out[0]
    pos = torch.where(torch.cat(pos_masks))[0]
    sampled = len(pos) + int(torch.cat(neg_masks).sum())
    _, deltas = concat_box_prediction_layers(*rpn_head[0])
    enc = _coder(stage).encode_single(torch.cat(matched_gt)[pos], torch.cat(anchors[0])[pos])
    want = _rho(stage, preset.form, deltas[pos] - enc).sum() / sampled
    assert len(pos) > 0
    _close(losses["loss_rpn_box_reg"], want, enc.numel())

    # ROI heads: sampled proposals with a label > 0, their class's box; / all sampled RoIs.
    stage = preset.stage("detection")
    proposals, matched_idxs, labels, _ = roi.select_training_samples.out[0]
    box_reg = predictor[0][1].reshape(-1, NUM_CLASSES, 4)
    total, row, terms = 0.0, 0, 0
    for props, idx, lab, t in zip(proposals, matched_idxs, labels, targets, strict=True):
        fg = lab > 0
        enc = _coder(stage).encode_single(t["boxes"][idx[fg]], props[fg])
        pred = box_reg[row : row + len(props)][fg, lab[fg]]
        total = total + _rho(stage, preset.form, pred - enc).sum()
        row, terms = row + len(props), terms + enc.numel()
    assert terms > 0 and row == box_reg.shape[0]
    _close(losses["loss_box_reg"], total / row, terms)


@pytest.mark.parametrize("preset_name", ["exp-c", "publication", "detectron-retinanet"])
@pytest.mark.parametrize("arch", ["tiny", "resnet50_fpn"])
def test_retinanet_box_loss_is_lambda_h_of_normalised_targets(arch: str, preset_name: str) -> None:
    torch.manual_seed(0)
    preset = load_preset(preset_name)
    model = apply_params(RETINA[arch]().double(), preset).train()
    transformed = _keep_output(model.transform)
    anchors = _keep_output(model.anchor_generator)
    regression = _keep_output(model.head.regression_head)
    model.proposal_matcher = _Record(model.proposal_matcher)
    losses = model(*_batch())
    stage = preset.stage("proposal")
    per_image, terms = [], 0
    for pred, anc, t, matched in zip(
        regression[0], anchors[0], transformed[0][1], model.proposal_matcher.out, strict=True
    ):
        fg = matched >= 0
        enc = _coder(stage).encode_single(t["boxes"][matched[fg]], anc[fg])
        per_image.append(_rho(stage, preset.form, pred[fg] - enc).sum() / max(1, int(fg.sum())))
        terms += enc.numel()
    assert terms > 0
    _close(losses["bbox_regression"], sum(per_image) / len(per_image), terms)


# --- params as a name, a YAML file, a Preset; in place; errors ---------------------------


def test_params_from_yaml_file_and_preset_object_match_the_name(tmp_path: Path) -> None:
    preset = load_preset("exp-a")
    path = tmp_path / "measured.yaml"
    path.write_text(yaml.safe_dump(preset.to_mapping()), encoding="utf-8")
    run_config = tmp_path / "config.yaml"  # a run's resolved config, preset under params
    run_config.write_text(yaml.safe_dump({"params": preset.to_mapping()}), encoding="utf-8")
    torch.manual_seed(0)
    base = tiny_frcnn().double()
    want, _ = _losses_and_grads(apply_params(copy.deepcopy(base), "exp-a"), 0)
    for params in (str(path), path, run_config, preset, preset.to_mapping()):
        got, _ = _losses_and_grads(apply_params(copy.deepcopy(base), params), 0)
        _assert_equal(got, want)
    model = apply_params(copy.deepcopy(base), path, target_encoding="linear")
    assert model.rpn.box_loss.weight == 0.25 and model.roi_heads.box_loss.weight == 0.5
    assert model.rpn.box_coder.weights == (20.0, 20.0, 10.0, 10.0)
    assert type(model.rpn.box_coder).__name__ == "LinearBoxCoder"


def test_apply_is_in_place_and_can_be_repeated() -> None:
    model = tiny_retinanet()
    reg_head = model.head.regression_head
    hooked = []
    reg_head.register_forward_hook(lambda *_: hooked.append(1))
    apply_params(model, "exp-b")
    assert model.head.regression_head is reg_head and model.box_coder is reg_head.box_coder
    apply_params(model, "torchvision-retinanet")
    assert reg_head.box_loss.loss == "l1" and reg_head.box_coder.weights == (1.0, 1.0, 1.0, 1.0)
    model.eval()([torch.rand(3, 64, 64)])
    assert hooked == [1]  # the user's hook survives


class _MyRPN(RegionProposalNetwork):
    pass


class _MyHead(RetinaNetHead):
    pass


class _MyRoIHeads(RoIHeads):
    pass


def test_unsupported_models_and_stages_are_one_input_error() -> None:
    with pytest.raises(
        InputError, match=r"needs a torchvision FasterRCNN.*RetinaNet.*got a Linear"
    ):
        apply_params(nn.Linear(2, 2), "exp-c")
    frcnn = tiny_frcnn()
    frcnn.rpn.__class__ = _MyRPN
    with pytest.raises(InputError, match=r"model\.rpn is a _MyRPN.*supported: torchvision"):
        apply_params(frcnn, "exp-c")
    retina = tiny_retinanet()
    retina.head.__class__ = _MyHead
    with pytest.raises(InputError, match=r"model\.head is a _MyHead.*RetinaNetHead"):
        apply_params(retina, "exp-c")
    frcnn = tiny_frcnn()
    frcnn.roi_heads.__class__ = _MyRoIHeads
    with pytest.raises(InputError, match=r"model\.roi_heads is a _MyRoIHeads"):
        apply_params(frcnn, "exp-c")
    assert type(frcnn.rpn) is RegionProposalNetwork  # nothing changed before the error
    with pytest.raises(InputError, match=r"'exp-z' is neither a preset \(publication"):
        apply_params(tiny_frcnn(), "exp-z")
    with pytest.raises(InputError, match="params must be a preset name.*got int"):
        apply_params(tiny_frcnn(), 3)
    with pytest.raises(InputError, match="target_encoding"):
        apply_params(tiny_frcnn(), "exp-c", target_encoding="sqrt")
    two_stage_less = Preset.from_mapping(
        {"name": "x", "stages": {"proposal": {}, "detection": {"lam": 2}}}
    )
    assert apply_params(tiny_frcnn(), two_stage_less).roi_heads.box_loss.weight == 2.0


def test_a_bad_yaml_file_is_an_input_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("stages: [1, 2", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.yaml.*not readable YAML"):
        apply_params(tiny_frcnn(), bad)
    bad.write_text("- a list\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"bad\.yaml.*mapping"):
        apply_params(tiny_frcnn(), bad)
    bad.write_text("stages: {proposal: {loss: mse}}\n", encoding="utf-8")
    with pytest.raises(InputError, match="loss must be one of"):
        apply_params(tiny_frcnn(), bad)


# --- 3. no Hydra, Typer, pandas, matplotlib ---------------------------------------------

_LIGHT = """
import sys, torch
import huberkl.losses
from huberkl.detect import apply_params
from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
m = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=2,
                                      min_size=64, max_size=64)
apply_params(m, "exp-c")
apply_params(m, sys.argv[1])
m.train()([torch.rand(3, 64, 64)], [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]),
                                     "labels": torch.tensor([1])}])
huberkl.losses.huber(torch.zeros(3), 1.0)
heavy = ("hydra", "omegaconf", "typer", "pandas", "matplotlib")
print(sorted({n.split(".")[0] for n in sys.modules if n.split(".")[0] in heavy}))
"""


@pytest.mark.integration
def test_library_path_imports_no_hydra_typer_pandas_matplotlib(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(load_preset("exp-b").to_mapping()), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-c", _LIGHT, str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=True,
        timeout=300,
        encoding="utf-8",
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


# --- 4. the README example --------------------------------------------------------------


def _readme_example() -> str:
    text = (REPO / "docs" / "DETECTION.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "apply_params" in b]
    assert len(blocks) == 1, "docs/DETECTION.md must have one python block that uses apply_params"
    return blocks[0]


@pytest.mark.integration
def test_readme_example_runs() -> None:
    code = _readme_example()
    assert "fasterrcnn_resnet50_fpn(" in code and "weights=None" in code and ".step()" in code
    namespace: dict = {}
    exec(compile(code, "docs/DETECTION.md", "exec"), namespace)
    model = namespace["model"]
    assert isinstance(model.rpn, HuberKLRPN) and isinstance(model.roi_heads, HuberKLRoIHeads)
    assert all(torch.isfinite(v) for v in namespace["losses"].values())


# --- 5. build_model goes through apply_params -------------------------------------------


def test_build_model_uses_apply_params(monkeypatch: pytest.MonkeyPatch) -> None:
    import huberkl.detect.model.detectors as models

    calls = []

    def spy(model, params, **kw):
        calls.append((type(model).__name__, params, kw))
        return apply_params(model, params, **kw)

    monkeypatch.setattr(models, "apply_params", spy)
    tiny = dict(tiny_widths=(8, 16, 16, 32), fpn_channels=16, min_size=64, max_size=64)
    preset = load_preset("exp-c")
    models.build_model(dict(tiny, target_encoding="linear"), preset, 3)
    models.build_model(dict(tiny, arch="retinanet"), "exp-a", 3)
    assert calls == [
        ("FasterRCNN", preset, {"target_encoding": "linear"}),
        ("HuberKLRetinaNet", "exp-a", {"target_encoding": "log"}),
    ]
