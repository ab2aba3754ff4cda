"""Fashion-MNIST (Xiao et al., 2017) from Debian's `dataset-fashion-mnist`: idx files, read with numpy.

Nothing is downloaded: `apt-get install dataset-fashion-mnist` puts the four files (gzipped or
not) in /usr/share/datasets/fashion-mnist/; FASHION_MNIST_DIR points elsewhere.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
DIR_ENV = "FASHION_MNIST_DIR"
# the data set's own class names, in label order
CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
          "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
_IDX_DTYPE = {0x08: np.uint8}


class DatasetMissing(FileNotFoundError):
    pass


def data_dir() -> Path:
    return Path(os.environ.get(DIR_ENV, DEFAULT_DIR))


def _open(path: Path):
    for candidate in (path, path.with_name(path.name + ".gz")):
        if candidate.is_file():
            return gzip.open(candidate, "rb") if candidate.suffix == ".gz" else open(candidate, "rb")
    raise DatasetMissing(f"Fashion-MNIST not found: no {path.name}[.gz] in {path.parent} "
                         "(apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR)")


def read_idx(path: Path) -> np.ndarray:
    """An idx file (big-endian header: two zero bytes, dtype code, rank, then the sizes)."""
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPE:
        raise ValueError(f"{path.name} is not an idx file of unsigned bytes")
    rank = data[3]
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=rank, offset=4))
    array = np.frombuffer(data, _IDX_DTYPE[data[2]], offset=4 + 4 * rank)
    if array.size != int(np.prod(shape)):
        raise ValueError(f"{path.name}: {array.size} values for a shape of {shape}")
    return array.reshape(shape)


def load(split: str, directory: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 28, 28], labels uint8 [N]) of the 'train' (60,000) or 'test' (10,000) split."""
    directory = Path(directory) if directory is not None else data_dir()
    images_name, labels_name = _FILES[split]
    images, labels = read_idx(directory / images_name), read_idx(directory / labels_name)
    if len(images) != len(labels):
        raise ValueError(f"{split}: {len(images)} images but {len(labels)} labels")
    return images, labels


def available(directory: Path | None = None) -> bool:
    directory = Path(directory) if directory is not None else data_dir()
    return all(any((directory / n).with_name(n + ext).is_file() for ext in ("", ".gz"))
               for pair in _FILES.values() for n in pair)
