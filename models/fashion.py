"""fashion_net: a small CNN for Fashion-MNIST (1x28x28 grey images, 10 classes), our own.

Three conv blocks (conv, batch-norm, ReLU, max-pool) shrink 28x28 to 3x3, so cutting after a block
sends 16x14x14, 32x7x7 or 64x3x3 floats instead of the 28x28 input: cuts mean something. Trained
by `python -m models.train_fashion_net`; the weights ship in models/weights/fashion_net.pt.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision import transforms

from models.chain import ChainModel, leaves

INPUT_SHAPE = (1, 1, 28, 28)
WEIGHTS_FILE = Path(__file__).resolve().parent / "weights" / "fashion_net.pt"
# Pixel statistics of the 60,000 training images (scaled to [0, 1]): the normalisation training
# used, so inference must use it too.
MEAN, STD = 0.2860, 0.3530
NORMALIZE = transforms.Normalize(mean=[MEAN], std=[STD])
# A photo made into a Fashion-MNIST image: grey, shorter side to 28, centre crop. The data set's
# images are light garments on black; a photo on a white background should be inverted first.
PREPROCESS = transforms.Compose([
    transforms.Grayscale(1),
    transforms.Resize(28, interpolation=transforms.InterpolationMode.BILINEAR),
    transforms.CenterCrop(28),
    transforms.ToTensor(),
    NORMALIZE,
])


def batch_from_uint8(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] (the data set's) -> float32 [N, 1, 28, 28], as PREPROCESS prepares one
    image: /255 (ToTensor), then NORMALIZE. Training and the accuracy benchmark use this."""
    return NORMALIZE(torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1).float().div(255))


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.MaxPool2d(2)]


class FashionNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(*_block(1, 16), *_block(16, 32), *_block(32, 64))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(nn.Linear(64 * 3 * 3, 128), nn.ReLU(inplace=True), nn.Dropout(0.3),
                                        nn.Linear(128, num_classes))

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))


def reference() -> nn.Module:
    """The architecture, weights from torch's current RNG (training starts from these)."""
    return FashionNet()


def to_chain(model: nn.Module) -> ChainModel:
    named = leaves(model, "")
    return ChainModel("fashion_net", [m for _, m in named], [n for n, _ in named], input_shape=INPUT_SHAPE)


def default_weights_file() -> Path:
    if not WEIGHTS_FILE.is_file():
        raise FileNotFoundError(f"fashion_net's weights are missing: {WEIGHTS_FILE} "
                                "(train them: python -m models.train_fashion_net)")
    return WEIGHTS_FILE
