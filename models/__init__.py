"""Model registry: the single source of the model names the command line accepts."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from models import alexnet, efficientnet, fashion, lenet, mobilenet, vgg
from models.chain import INPUT_SHAPE, ChainModel, model_partition, weights_fingerprint
from models.weights import IMAGENET, WeightsUnavailable, categories, load_state_dict, model_input, preprocessing

# Seed of the default weights: both sides build identical weights without sharing a file.
WEIGHTS_SEED = 0

# name -> module with reference() (the architecture) and to_chain() (its units)
_REGISTRY = {"alex_net": alexnet, "vgg_net": vgg, "le_net": lenet, "mobile_net": mobilenet,
             "efficient_net": efficientnet, "fashion_net": fashion}
MODEL_NAMES: tuple[str, ...] = tuple(_REGISTRY)  # the chain models


class UnknownModelError(ValueError):
    def __init__(self, name: str):
        super().__init__(f"unknown chain model {name!r}; valid: {', '.join(MODEL_NAMES)} "
                         "(the DAG models res_net, google_net: models.dag.get_dag_model)")


def check_model_name(name: str) -> str:
    if name not in _REGISTRY:
        raise UnknownModelError(name)
    return name


def build_reference(name: str) -> nn.Module:
    """The reference (torchvision) architecture with the default deterministic weights."""
    module = _REGISTRY[check_model_name(name)]
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(WEIGHTS_SEED)
        return module.reference()


def get_dnn_model(name: str, weights: str | Path | None = None,
                  device: str | torch.device = "cpu") -> ChainModel:
    """The model `name` as a chain of units in eval mode.

    weights: a state dict file, "imagenet" (torchvision's), or None: the model's default
    (models/weights.py: real weights for efficient_net and fashion_net, else seeded).
    """
    reference = build_reference(name)
    state = load_state_dict(name, weights)
    if state is not None:
        reference.load_state_dict(state)
    return _REGISTRY[name].to_chain(reference).to(device).eval()


from models.dag import DAG_MODEL_NAMES  # noqa: E402  (models.dag needs models.chain only)

# Every model the scripts accept: the chains, then the DAGs (traced graphs, models/dag.py).
ALL_MODEL_NAMES: tuple[str, ...] = MODEL_NAMES + DAG_MODEL_NAMES

def input_shape(name: str) -> tuple[int, ...]:
    """The input batch shape of model `name` (fashion_net: 1x1x28x28; the others 1x3x224x224)."""
    return tuple(getattr(_REGISTRY.get(name), "INPUT_SHAPE", INPUT_SHAPE))


def get_model(name: str, weights: str | Path | None = None, device: str | torch.device = "cpu"):
    """Any accepted model by name: a ChainModel, or a DagModel (traced graph) for the DAG names."""
    from models.dag import get_dag_model  # noqa: PLC0415  (models.dag imports this package's chain)
    if name in DAG_MODEL_NAMES:
        return get_dag_model(name, weights).to(device)
    return get_dnn_model(name, weights, device)


__all__ = ["ALL_MODEL_NAMES", "DAG_MODEL_NAMES", "IMAGENET", "INPUT_SHAPE", "MODEL_NAMES", "ChainModel", "UnknownModelError",
           "WeightsUnavailable", "build_reference", "categories", "check_model_name", "get_dnn_model", "get_model",
           "input_shape", "model_input", "model_partition", "preprocessing", "weights_fingerprint"]
