"""Input images: a JPEG/PNG resized and normalised the torchvision (ImageNet) way."""
from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms

from models import INPUT_SHAPE

# torchvision's ImageNet preprocessing: resize the short side to 256, centre-crop 224, normalise.
PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(INPUT_SHAPE[-1]),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
FIXED_INPUT_SEED = 2017  # the input when no image is given: the same tensor on every run


class ImageError(ValueError):
    pass


def load_image(path: str | Path) -> torch.Tensor:
    """A 1x3x224x224 float32 batch from an image file; ImageError with a readable reason."""
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except Image.DecompressionBombError as e:  # a header declaring more pixels than PIL will decode
        raise ImageError(f"{path} is too large to decode: {e}".split(" could be decompression bomb")[0]) from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"cannot read {path} as an image ({e.__class__.__name__})") from None
    return PREPROCESS(rgb).unsqueeze(0)


def fixed_input() -> torch.Tensor:
    return torch.randn(INPUT_SHAPE, generator=torch.Generator().manual_seed(FIXED_INPUT_SEED))
