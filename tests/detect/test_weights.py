"""Weights by torchvision name from the hub cache ($TORCH_HOME/hub/checkpoints), never downloaded.

Each test points TORCH_HOME at a temporary folder and saves a state dict of the right
architecture under the file name torchvision's weights URL ends with.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torchvision.models import detection

from huberkl.detect.model.backbones import build_backbone
from huberkl.detect.model.detectors import build_model
from huberkl.detect.model.weights import DETECTOR_MODELS, cached_file, is_path, lookup
from huberkl.errors import InputError
from huberkl.params import load_preset


@pytest.fixture
def hub(tmp_path, monkeypatch) -> Path:
    """An empty hub cache; any attempt to download fails the test."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_download(*args, **kwargs):
        raise AssertionError(f"tried to download {args[:1]}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    assert folder == tmp_path / "torch" / "hub" / "checkpoints"
    return folder


def _cache(hub: Path, state: dict, file_name: str) -> Path:
    hub.mkdir(parents=True, exist_ok=True)
    torch.save(state, hub / file_name)
    return hub / file_name


def test_names_and_paths_are_told_apart(tmp_path) -> None:
    for name in ("DEFAULT", "IMAGENET1K_V1", "COCO_V1", "ResNet50_Weights.IMAGENET1K_V2"):
        assert not is_path(name)
    for path in ("/w/resnet50.pth", "weights/x", "resnet50-0676ba61.pth", "model.pt"):
        assert is_path(path)
    (tmp_path / "DEFAULT").write_text("x", encoding="utf-8")
    assert is_path(tmp_path / "DEFAULT")
    assert lookup("resnet50", "DEFAULT").name == "IMAGENET1K_V2"  # torchvision's DEFAULT
    assert lookup("resnet50", "ResNet50_Weights.IMAGENET1K_V1").name == "IMAGENET1K_V1"


def test_backbone_weights_by_name_from_the_hub_cache(hub) -> None:
    torch.manual_seed(0)
    net = torchvision.models.resnet18()
    _cache(hub, net.state_dict(), "resnet18-f37072fd.pth")
    for name in ("IMAGENET1K_V1", "DEFAULT"):
        body = build_backbone("resnet18", weights_path=name, frozen_bn=True).body
        assert torch.equal(body.conv1.weight, net.conv1.weight)
        assert torch.equal(body.layer4[1].bn2.running_var, net.layer4[1].bn2.running_var)


def test_missing_cached_file_names_file_and_folder_without_downloading(hub) -> None:
    with pytest.raises(InputError) as info:
        build_backbone("resnet50", weights_path="IMAGENET1K_V1")
    msg = str(info.value)
    assert "resnet50-0676ba61.pth" in msg and str(hub) in msg and "\n" not in msg
    with pytest.raises(InputError, match=r"fasterrcnn_resnet50_fpn_coco-258fb6c6\.pth"):
        build_model(
            {"backbone": "resnet50", "weights": "COCO_V1"}, load_preset("implementation"), 3
        )


def test_bad_names_list_what_is_allowed(hub) -> None:
    with pytest.raises(
        InputError, match=r"IMAGENET1K_V3.*allowed: DEFAULT, IMAGENET1K_V1, IMAGENET1K_V2"
    ):
        build_backbone("resnet50", weights_path="IMAGENET1K_V3")
    with pytest.raises(InputError, match="tiny.*no torchvision weights"):
        build_backbone("tiny", weights_path="DEFAULT")
    with pytest.raises(InputError, match="no whole-detector weights for retinanet/resnet18"):
        build_model(
            {"arch": "retinanet", "backbone": "resnet18", "weights": "COCO_V1"},
            load_preset("implementation"),
            3,
        )


# torchvision's detector builders and the ModelConfig that reproduces their architecture.
_TORCHVISION = {
    "fasterrcnn_resnet50_fpn": {"arch": "faster_rcnn", "backbone": "resnet50"},
    "fasterrcnn_mobilenet_v3_large_fpn": {"arch": "faster_rcnn", "backbone": "mobilenet_v3"},
    "retinanet_resnet50_fpn": {"arch": "retinanet", "backbone": "resnet50"},
}
_COMMON = {"fpn_channels": 256, "representation_size": 1024, "anchor_sizes": None}


@pytest.mark.parametrize("builder", sorted(_TORCHVISION))
def test_our_detectors_have_torchvisions_state_dict_layout(builder) -> None:
    """Same keys and shapes as torchvision's detector for 91 logits (90 categories + 0)."""
    assert (
        DETECTOR_MODELS[(_TORCHVISION[builder]["arch"], _TORCHVISION[builder]["backbone"])]
        == builder
    )
    theirs = getattr(detection, builder)(weights=None, weights_backbone=None, num_classes=91)
    ours = build_model(_TORCHVISION[builder] | _COMMON, load_preset("implementation"), 90)
    a = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert a == b


def test_whole_detector_weights_by_name(hub) -> None:
    """COCO_V1 of the MobileNetV3 Faster R-CNN: all tensors for 90 categories; for 3, all but
    the class-dependent predictor, which keeps its initialisation."""
    torch.manual_seed(0)
    theirs = detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    weights = lookup("fasterrcnn_mobilenet_v3_large_fpn", "COCO_V1")
    assert cached_file(weights).name == "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    _cache(hub, theirs.state_dict(), cached_file(weights).name)
    cfg = _TORCHVISION["fasterrcnn_mobilenet_v3_large_fpn"] | _COMMON | {"weights": "COCO_V1"}
    ours = build_model(cfg, load_preset("implementation"), 90)
    for k, v in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[k], v), k

    torch.manual_seed(1)
    three = build_model(cfg, load_preset("implementation"), 3).state_dict()
    predictor = "roi_heads.box_predictor."
    for k, v in theirs.state_dict().items():
        if k.startswith(predictor):
            assert three[k].shape[0] in (4, 16)  # 3 categories + background (x4 box deltas)
        else:
            assert torch.equal(three[k], v), k


def test_older_files_load_through_torchvisions_key_upgrades(hub) -> None:
    """Files saved by older torchvision name the RPN conv ``rpn.head.conv.weight``."""
    torch.manual_seed(0)
    theirs = detection.fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=91
    )
    new = theirs.state_dict()
    old = type(new)((k.replace("rpn.head.conv.0.0.", "rpn.head.conv."), v) for k, v in new.items())
    old._metadata = type(new._metadata)((k, dict(v)) for k, v in new._metadata.items())
    old._metadata["rpn.head"]["version"] = 1
    assert "rpn.head.conv.weight" in old
    _cache(hub, old, "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth")
    cfg = _TORCHVISION["fasterrcnn_mobilenet_v3_large_fpn"] | _COMMON | {"weights": "DEFAULT"}
    ours = build_model(cfg, load_preset("implementation"), 90)
    assert torch.equal(ours.rpn.head.conv[0][0].weight, new["rpn.head.conv.0.0.weight"])


def test_coco_configs_name_imagenet_weights() -> None:
    from huberkl import config

    for name in ("coco", "coco-retinanet"):
        cfg = config.compose([f"detect={name}"])
        assert cfg.detect.model.backbone_weights == "IMAGENET1K_V1"
        assert not is_path(cfg.detect.model.backbone_weights)
