"""LeNet-5, our own, widened to take the 3x224x224 images the other models take."""
from torch import nn

from models.chain import ChainModel, leaves


class LeNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 6, kernel_size=5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        # Pools the 53x53 maps to LeNet's classic 5x5, so the classifier keeps its 400 inputs.
        self.avgpool = nn.AdaptiveAvgPool2d((5, 5))
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(inplace=True),
            nn.Linear(120, 84), nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.avgpool(self.features(x))))


def reference() -> nn.Module:
    """The reference architecture, weights from torch's current RNG."""
    return LeNet()


def to_chain(tv: nn.Module) -> ChainModel:
    named = leaves(tv, "")
    return ChainModel("le_net", [m for _, m in named], [n for n, _ in named])
