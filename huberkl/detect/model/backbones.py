"""Feature extractors for the detectors, built from torchvision parts; nothing is downloaded.

- ``tiny``: a few conv-BatchNorm-ReLU stages (strides 4/8/16/32, widths configurable)
  under torchvision's ``FeaturePyramidNetwork``; levels at strides 8/16/32. Small enough
  to train from scratch on a CPU.
- ``resnet18|resnet34|resnet50``: torchvision ResNets with an FPN of any width. From
  scratch every layer trains and BatchNorm is ordinary ``nn.BatchNorm2d``
  (``resnet_fpn_backbone``'s defaults, FrozenBatchNorm2d and ``trainable_layers=3``, suit
  ImageNet-initialised backbones only, and its FPN width is fixed at 256).
- ``mobilenet_v3``: MobileNetV3-Large with an FPN on its last two stages, as in
  torchvision's ``fasterrcnn_mobilenet_v3_large_fpn``.
- ``vgg16``: VGG-16's convolutions without the last max-pool (stride 16, 512 channels),
  no FPN: the paper's Faster R-CNN backbone.

The extra levels above the FPN are torchvision's: a max-pool level (``"pool"``) for
Faster R-CNN, P6/P7 for RetinaNet. Each backbone carries ``out_channels`` (torchvision's
contract), ``featmap_names`` (levels for RoI pooling), ``level_names`` and ``strides``
(all levels, extra ones included, for the anchor generator).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large, resnet
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.vgg import cfgs as vgg_cfgs
from torchvision.models.vgg import make_layers
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, LastLevelMaxPool, LastLevelP6P7
from torchvision.ops.misc import Conv2dNormActivation, FrozenBatchNorm2d

from huberkl.detect.model.weights import backbone_state, load_into
from huberkl.errors import InputError

BACKBONES = ("tiny", "resnet18", "resnet34", "resnet50", "mobilenet_v3", "vgg16")
EXTRAS = ("pool", "p6p7")


def _extra_block(extra: str, channels: int) -> ExtraFPNBlock:
    if extra == "pool":
        return LastLevelMaxPool()
    if extra == "p6p7":
        return LastLevelP6P7(channels, channels)  # P6 from P5, as torchvision's RetinaNet v1
    raise InputError(f"extra FPN levels must be one of {'|'.join(EXTRAS)}, got {extra!r}")


def _annotate(
    backbone: nn.Module, names: list[str], strides: list[int], extra: str | None
) -> nn.Module:
    extra_names = {"pool": ["pool"], "p6p7": ["p6", "p7"], None: []}[extra]
    backbone.featmap_names = list(names)
    backbone.level_names = list(names) + extra_names
    backbone.strides = list(strides) + [strides[-1] * 2 ** (i + 1) for i in range(len(extra_names))]
    return backbone


def tiny_body(
    widths: Sequence[int], depth: int, norm_layer: Callable[..., nn.Module]
) -> nn.Sequential:
    """Stem (stride 2) and four conv-BN-ReLU stages ``layer1..layer4`` at strides 4/8/16/32."""
    if len(widths) != 4 or any(int(w) < 1 for w in widths):
        raise InputError(
            f"tiny_widths must be 4 positive channel counts (strides 4, 8, 16, 32), got {list(widths)}"
        )
    if depth < 1:
        raise InputError(f"tiny_depth must be >= 1 (convolutions per stage), got {depth}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    layers["stem"] = Conv2dNormActivation(3, int(widths[0]), 3, stride=2, norm_layer=norm_layer)
    c_in = int(widths[0])
    for i, w in enumerate(widths, start=1):
        convs = [Conv2dNormActivation(c_in, int(w), 3, stride=2, norm_layer=norm_layer)]
        convs += [
            Conv2dNormActivation(int(w), int(w), 3, norm_layer=norm_layer) for _ in range(depth - 1)
        ]
        layers[f"layer{i}"] = nn.Sequential(*convs)
        c_in = int(w)
    return nn.Sequential(layers)


def _freeze_all_but(module: nn.Module, prefixes: Sequence[str]) -> None:
    for name, p in module.named_parameters():
        if not any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)


def _check_trainable(trainable_layers: int | None, most: int, name: str) -> int:
    if trainable_layers is None:
        return most
    if not 0 <= trainable_layers <= most:
        raise InputError(
            f"trainable_layers for {name} must be in [0, {most}] (or null = all), got {trainable_layers}"
        )
    return trainable_layers


def build_backbone(
    name: str,
    *,
    extra: str = "pool",
    fpn_channels: int = 256,
    tiny_widths: Sequence[int] = (48, 96, 192, 384),
    tiny_depth: int = 2,
    frozen_bn: bool = False,
    trainable_layers: int | None = None,
    weights_path: str | Path | None = None,
) -> nn.Module:
    """The backbone ``name`` (see the module docstring) with ``extra`` levels above the FPN.

    ``weights_path`` is a local classification state dict or a torchvision weights name
    (``IMAGENET1K_V1``, from the hub cache, :mod:`.weights`; e.g. torchvision's ImageNet
    ``resnet50-*.pth``) loaded before the head is cut off; ``trainable_layers`` counts
    stages from the top as torchvision does (``None``: all); ``frozen_bn`` swaps in
    ``FrozenBatchNorm2d`` (what torchvision uses under ImageNet weights).
    """
    if name not in BACKBONES:
        raise InputError(f"backbone must be one of {'|'.join(BACKBONES)}, got {name!r}")
    if fpn_channels < 1:
        raise InputError(f"fpn_channels must be >= 1, got {fpn_channels}")
    norm_layer: Callable[..., nn.Module] = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    block = _extra_block(extra, fpn_channels)

    if name == "tiny":
        if weights_path is not None:
            backbone_state(
                name, weights_path
            )  # a name: says which backbones have torchvision weights
            raise InputError(
                "the tiny backbone has no classification weights; use weights for the whole model"
            )
        body = tiny_body(tiny_widths, tiny_depth, norm_layer)
        ch = [int(w) for w in tiny_widths[1:]]
        fpn = BackboneWithFPN(
            body, {"layer2": "0", "layer3": "1", "layer4": "2"}, ch, fpn_channels, block
        )
        return _annotate(fpn, ["0", "1", "2"], [8, 16, 32], extra)

    if name.startswith("resnet"):
        net = resnet.__dict__[name](weights=None, norm_layer=norm_layer)
        if weights_path is not None:
            load_into(
                net,
                weights_path,
                f"{name} backbone weights",
                state=backbone_state(name, weights_path),
            )
        n = _check_trainable(trainable_layers, 5, name)
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n] + (["bn1"] if n == 5 else [])
        _freeze_all_but(net, train)
        # torchvision: Faster R-CNN uses C2..C5 (+pool), RetinaNet C3..C5 (+P6, P7).
        returned = [1, 2, 3, 4] if extra == "pool" else [2, 3, 4]
        stage2 = net.inplanes // 8
        ch = [stage2 * 2 ** (i - 1) for i in returned]
        layers = {f"layer{k}": str(v) for v, k in enumerate(returned)}
        fpn = BackboneWithFPN(net, layers, ch, fpn_channels, block)
        return _annotate(
            fpn, [str(v) for v in range(len(returned))], [2 ** (k + 1) for k in returned], extra
        )

    if name == "mobilenet_v3":
        net = mobilenet_v3_large(weights=None, norm_layer=norm_layer)
        if weights_path is not None:
            load_into(
                net,
                weights_path,
                "mobilenet_v3 backbone weights",
                state=backbone_state(name, weights_path),
            )
        features = net.features
        stages = (
            [0]
            + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)]
            + [len(features) - 1]
        )
        n = _check_trainable(trainable_layers, len(stages), name)
        freeze_before = len(features) if n == 0 else stages[len(stages) - n]
        for b in features[:freeze_before]:
            b.requires_grad_(False)
        returned = [len(stages) - 2, len(stages) - 1]  # torchvision's choice: C4 and the last stage
        layers = {str(stages[k]): str(v) for v, k in enumerate(returned)}
        ch = [features[stages[k]].out_channels for k in returned]
        fpn = BackboneWithFPN(features, layers, ch, fpn_channels, block)
        return _annotate(fpn, ["0", "1"], [16, 32], extra)

    # vgg16: conv1_1 .. conv5_3 + ReLU, the last max-pool dropped (stride 16), no FPN. Only
    # the convolutions are built (VGG's classifier alone holds 120 M parameters).
    features = make_layers(vgg_cfgs["D"])[:-1]
    for m in features.modules():
        if isinstance(m, nn.Conv2d):  # torchvision VGG's initialisation
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    if weights_path is not None:
        load_into(
            features,
            weights_path,
            "vgg16 backbone weights",
            prefix="features.",
            state=backbone_state(name, weights_path),
        )
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]  # 4 pools: 5 blocks
    n = _check_trainable(trainable_layers, 5, name)
    first_trained = 0 if n == 5 else (len(features) if n == 0 else pools[4 - n] + 1)
    for m in list(features)[:first_trained]:
        m.requires_grad_(False)
    return _annotate(_SingleLevel(features, 512), ["0"], [16], None)


class _SingleLevel(nn.Module):
    """A plain feature extractor presented as torchvision's one-level ``{"0": x}``."""

    def __init__(self, body: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body = body
        self.out_channels = out_channels

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return OrderedDict([("0", self.body(x))])


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (of those that train, if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__: list[Any] = [
    "BACKBONES",
    "build_backbone",
    "count_parameters",
    "tiny_body",
]
