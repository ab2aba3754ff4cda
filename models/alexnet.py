"""torchvision's AlexNet as a chain: features, avg-pool, flatten, classifier."""
from torch import nn
from torchvision.models import alexnet

from models.chain import ChainModel, leaves


def reference() -> nn.Module:
    """The reference architecture, weights from torch's current RNG."""
    return alexnet(weights=None)


def to_chain(tv: nn.Module) -> ChainModel:
    # torchvision's forward calls torch.flatten between avgpool and classifier: made explicit here.
    # get_submodule is typed as a Module; tv.features would be Tensor | Module to a type checker
    named = [*leaves(tv.get_submodule("features"), "features"), ("avgpool", tv.get_submodule("avgpool")),
             ("flatten", nn.Flatten(1)), *leaves(tv.get_submodule("classifier"), "classifier")]
    return ChainModel("alex_net", [m for _, m in named], [n for n, _ in named])
