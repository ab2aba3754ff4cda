"""torchvision's VGG16 with batch-norm as a chain: features, avg-pool, flatten, classifier."""
from torch import nn
from torchvision.models import vgg16_bn

from models.chain import ChainModel, leaves


def reference() -> nn.Module:
    """The reference architecture, weights from torch's current RNG."""
    return vgg16_bn(weights=None)


def to_chain(tv: nn.Module) -> ChainModel:
    # get_submodule is typed as a Module; tv.features would be Tensor | Module to a type checker
    named = [*leaves(tv.get_submodule("features"), "features"), ("avgpool", tv.get_submodule("avgpool")),
             ("flatten", nn.Flatten(1)), *leaves(tv.get_submodule("classifier"), "classifier")]
    return ChainModel("vgg_net", [m for _, m in named], [n for n, _ in named])
