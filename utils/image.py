"""Input images: an image file made into a batch of one, by the transform its model's weights
expect (models.preprocessing(name, weights) gives it; utils stays below models and takes it in)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms

# torchvision's ImageNet preprocessing: resize the short side to 256, centre-crop 224, normalise.
# The default transform, for callers that do not name a model's own.
PREPROCESS = transforms.Compose([
    transforms.Resize(256),
    transforms.CenterCrop(224),
    transforms.ToTensor(),
    transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
])
DEFAULT_SHAPE = (1, 3, 224, 224)
FIXED_INPUT_SEED = 2017  # the input when no image is given: the same tensor on every run
# Photos that ship with scikit-learn: `--image china.jpg` finds them when the working directory has
# no file of that name.
SAMPLE_IMAGES = ("china.jpg", "flower.jpg")


class ImageError(ValueError):
    pass


def sample_image_path(name: str) -> Path | None:
    """scikit-learn's copy of a sample photo (china.jpg, flower.jpg), or None."""
    if name not in SAMPLE_IMAGES:
        return None
    try:
        from importlib.resources import files
        path = Path(str(files("sklearn.datasets.images") / name))
    except (ImportError, ModuleNotFoundError, TypeError):
        return None
    return path if path.is_file() else None


def resolve_image_path(path: str | Path) -> Path:
    """`path` itself when it exists; else, for the bare name china.jpg or flower.jpg, the photo
    scikit-learn ships; else `path` (reading it then says it is not found)."""
    path = Path(path)
    if not path.exists() and path.parent == Path("."):
        return sample_image_path(path.name) or path
    return path


def load_image(path: str | Path, transform: Callable | None = None) -> torch.Tensor:
    """A batch of one from an image file, by `transform` (PIL image -> [C, H, W] tensor; default
    torchvision's ImageNet PREPROCESS); ImageError with a readable reason."""
    path = resolve_image_path(path)
    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"image not found: {path}") from None
    except Image.DecompressionBombError as e:  # a header declaring more pixels than PIL will decode
        raise ImageError(f"{path} is too large to decode: {e}".split(" could be decompression bomb")[0]) from None
    except (UnidentifiedImageError, OSError) as e:
        raise ImageError(f"cannot read {path} as an image ({e.__class__.__name__})") from None
    return (transform or PREPROCESS)(rgb).unsqueeze(0)


def fixed_input(shape: tuple[int, ...] = DEFAULT_SHAPE) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(FIXED_INPUT_SEED))
