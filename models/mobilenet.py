"""torchvision's MobileNetV2 as a chain; each InvertedResidual block is one unit."""
from torch import nn
from torchvision.models import mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from models.chain import ChainModel, leaves


def reference() -> nn.Module:
    """The reference architecture, weights from torch's current RNG."""
    return mobilenet_v2(weights=None)


def to_chain(tv: nn.Module) -> ChainModel:
    # torchvision's forward pools and flattens functionally before the classifier.
    # (get_submodule is typed as a Module; tv.features would be Tensor | Module to a type checker)
    named = [*leaves(tv.get_submodule("features"), "features", keep=(InvertedResidual,)),
             ("avgpool", nn.AdaptiveAvgPool2d((1, 1))), ("flatten", nn.Flatten(1)),
             *leaves(tv.get_submodule("classifier"), "classifier")]
    return ChainModel("mobile_net", [m for _, m in named], [n for n, _ in named])
