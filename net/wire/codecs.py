"""Codecs on the wire: how a crossing tensor (or, at cut 0, the input image) is coded on the edge
and decoded on the cloud. One small registry; the planner weighs them with the cut.

Tensor codecs (any cut, any float32 tensor):
  none   float32 raw bytes (the protocol's plain tensor, no entry in header["codecs"])
  zstd   float32 bytes byte-shuffled (all first bytes, then all second bytes, ...) + zstandard; exact
  fp16   float16 (lossy)
  int8   uint8 with a per-channel (dim 1; per-tensor for 2-D) minimum and scale (lossy)
Input codecs (cut 0 only, from an image file):
  pixels         uint8 HxWx3 after resize and crop; the cloud normalises as the edge would; exact
  webp_lossless  the crop as lossless WebP (about half of `pixels` on a photo, in ~2 ms); exact with
                 any decoder (lossless WebP decodes to the encoded pixels by its specification)
  jpeg75/90/95   the crop re-encoded as JPEG at that quality (lossy)
  file           the image file's own bytes, metadata segments stripped without re-encoding; exact
                 only when both sides decode with the same Pillow and libjpeg (see `image_decoder`)

On the wire a coded tensor is a plain 1-D uint8 tensor of its coded bytes, and the frame header
says what it decodes to: header["codecs"] = {name: {"codec", "dtype", "shape"}} (the decoded
dtype and shape). The cloud checks the decoded dtype and shape against the model at that cut and
the coded size against what the codec can produce from it, before reading a byte of the body
(`declared_entries`); decoding is then bounded by the declared size (`decode`).
"""
from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import zstandard
from PIL import Image, UnidentifiedImageError
from PIL import __version__ as PILLOW_VERSION
from PIL import features as pil_features
from torchvision import transforms

from utils.image import PREPROCESS, ImageError

TENSOR_CODECS = ("none", "zstd", "fp16", "int8")
INPUT_CODECS = ("file", "pixels", "webp_lossless", "jpeg75", "jpeg90", "jpeg95")
ALL_CODECS = TENSOR_CODECS + INPUT_CODECS
LOSSY = frozenset({"fp16", "int8", "jpeg75", "jpeg90", "jpeg95"})
EXACT = tuple(c for c in ALL_CODECS if c not in LOSSY)
JPEG_QUALITY = {"jpeg75": 75, "jpeg90": 90, "jpeg95": 95}
# The codecs that re-encode the crop as an image file: (Pillow format, save options). Lossless WebP
# at its fastest effort (method 0, quality 0): on the sample photos' crops 74 and 77 KB in ~2 ms,
# where the slowest effort saves 8-12% more bytes at ~500x the time.
CROP_FORMATS: dict[str, tuple[str, dict]] = {
    "webp_lossless": ("WEBP", {"lossless": True, "method": 0, "quality": 0}),
    **{codec: ("JPEG", {"quality": quality}) for codec, quality in JPEG_QUALITY.items()},
}

ZSTD_LEVEL = 1  # activations: level 1 is within a few % of level 3's size at twice the speed
# An image file's decoded pixels may be at most this many times the model input's (the bound the
# cloud checks from the file's header, before decoding it).
MAX_IMAGE_PIXELS_FACTOR = 16
IMAGE_FORMATS = ("JPEG", "PNG")
HAS_WEBP = bool(pil_features.check("webp"))  # PyPI's Pillow has it; a Pillow built without libwebp does not

Preprocess = Callable[[Image.Image], torch.Tensor]  # PIL image -> model input [C, H, W]


def split_preprocess(preprocess: Preprocess) -> tuple[Callable, Callable] | None:
    """(resize + crop: PIL -> PIL, to tensor + normalise: PIL or HxWx3 uint8 -> tensor) when the
    model's preprocessing is a Compose ending in ToTensor, Normalize: what `pixels` and the JPEG
    codecs need (the edge crops, the cloud normalises). None for any other preprocessing."""
    steps = getattr(preprocess, "transforms", None)
    if (isinstance(preprocess, transforms.Compose) and steps is not None and len(steps) >= 2
            and isinstance(steps[-2], transforms.ToTensor) and isinstance(steps[-1], transforms.Normalize)):
        return transforms.Compose(steps[:-2]), transforms.Compose(steps[-2:])
    return None


# torchvision's ImageNet normalisation (the seeded models'): what the codec tables were profiled with
TORCHVISION_NORMALISE = transforms.Compose(PREPROCESS.transforms[-2:])


def input_codecs_for(preprocess: Preprocess, input_shape: tuple[int, ...]) -> tuple[str, ...]:
    """The input codecs a model can take: an RGB model takes its image `file` (the cloud runs the
    whole preprocessing), and `pixels` and the JPEG crops where its preprocessing splits."""
    if len(input_shape) != 4 or input_shape[1] != 3:
        return ()
    if split_preprocess(preprocess) is None:
        return ("file",)
    return tuple(c for c in INPUT_CODECS if c != "webp_lossless" or HAS_WEBP)


class CodecError(ValueError):
    """A coded tensor that does not decode to what its header declared (or is refused before)."""


def is_lossy(codec: str) -> bool:
    return codec in LOSSY


def is_input_codec(codec: str) -> bool:
    return codec in INPUT_CODECS


def image_decoder() -> str:
    """The image decoder this side uses: `file` is exact only where both sides say the same."""
    return f"pillow {PILLOW_VERSION}; libjpeg {pil_features.version('jpg')}"


# -- tensor codecs ---------------------------------------------------------------------------------
def _channels(shape: tuple[int, ...] | list[int]) -> int:
    """int8 scales per channel (dim 1) for tensors of 3+ dims, one for the whole tensor else."""
    return shape[1] if len(shape) >= 3 else 1


def coded_size_bound(codec: str, shape: list[int] | tuple[int, ...]) -> tuple[int, int]:
    """(least, most) coded bytes a tensor codec can produce for a float32 tensor of `shape`."""
    n = math.prod(shape)
    if codec == "fp16":
        return 2 * n, 2 * n
    if codec == "int8":
        exact = 8 * _channels(shape) + n
        return exact, exact
    if codec == "zstd":
        raw = 4 * n
        return 1, raw + raw // 128 + 1024  # zstd's worst case (ZSTD_compressBound) with room
    raise CodecError(f"{codec} is not a tensor codec")


def encode_tensor(codec: str, tensor: torch.Tensor) -> torch.Tensor:
    """The coded bytes of a float32 tensor, as a 1-D uint8 tensor."""
    t = tensor.detach().cpu().contiguous().float()
    if codec == "fp16":
        return t.half().reshape(-1).view(torch.uint8)
    if codec == "int8":
        c = _channels(t.shape)
        per = t.reshape(t.shape[0], c, -1).transpose(0, 1).reshape(c, -1) if c > 1 else t.reshape(1, -1)
        low, high = per.min(dim=1).values, per.max(dim=1).values
        scale = (high - low) / 255
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        q = ((per - low[:, None]) / scale[:, None]).round_().clamp_(0, 255).to(torch.uint8)
        if c > 1:  # back to the tensor's own order, channel-major within each batch row
            q = q.reshape(c, t.shape[0], -1).transpose(0, 1).contiguous()
        head = torch.cat([low, scale]).view(torch.uint8)
        return torch.cat([head, q.reshape(-1)])
    if codec == "zstd":
        shuffled = memoryview(t.reshape(-1).view(torch.uint8).reshape(-1, 4).t().contiguous().numpy())  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
        return torch.frombuffer(bytearray(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(shuffled)),
                                dtype=torch.uint8)
    raise CodecError(f"{codec} is not a tensor codec")


def _decode_tensor(codec: str, data: bytes | memoryview, shape: list[int]) -> torch.Tensor:
    n = math.prod(shape)
    if codec == "fp16":
        return torch.frombuffer(bytearray(data), dtype=torch.float16).float().reshape(shape)
    if codec == "int8":
        c = _channels(shape)
        head = torch.frombuffer(bytearray(data[:8 * c]), dtype=torch.float32)
        low, scale = head[:c], head[c:]
        if not bool(torch.isfinite(head).all()):
            raise CodecError("int8 scales are not finite")
        q = torch.frombuffer(bytearray(data[8 * c:]), dtype=torch.uint8).float()
        if c > 1:
            q = q.reshape(shape[0], c, -1)
            return (q * scale[None, :, None] + low[None, :, None]).reshape(shape)
        return (q * scale + low).reshape(shape)
    if codec == "zstd":
        raw = _zstd_bounded(bytes(data), 4 * n)
        shuffled = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(4, -1)
        return shuffled.t().contiguous().view(torch.float32).reshape(shape)
    raise CodecError(f"{codec} is not a tensor codec")


def _zstd_bounded(data: bytes, size: int) -> bytes:
    """Exactly `size` bytes from a zstd frame, never more decompressed than size + 1: a frame that
    declares or expands to another size is refused."""
    try:
        declared = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError:
        raise CodecError("not a zstd frame") from None
    if declared != zstandard.CONTENTSIZE_UNKNOWN and declared != size:
        raise CodecError(f"zstd frame declares {declared} bytes, the header {size}")
    out = bytearray()
    try:
        with zstandard.ZstdDecompressor().stream_reader(data) as reader:
            while len(out) <= size:
                chunk = reader.read(size + 1 - len(out))
                if not chunk:
                    break
                out += chunk
    except zstandard.ZstdError as e:
        raise CodecError(f"zstd frame does not decode ({e})") from None
    if len(out) != size:
        what = "expands past" if len(out) > size else "is shorter than"
        raise CodecError(f"zstd frame {what} its declared {size} bytes")
    return bytes(out)


# -- input codecs ----------------------------------------------------------------------------------
class ImageSource:
    """An image file in hand on the edge: its bytes, and every way to send it."""

    def __init__(self, data: bytes, name: str = "image", preprocess: Preprocess = PREPROCESS):
        self.data, self.name, self.preprocess = data, name, preprocess
        try:
            with Image.open(io.BytesIO(data)) as img:
                self.format, self.size = img.format, img.size
        except Image.DecompressionBombError as e:  # a header declaring more pixels than PIL will decode
            raise ImageError(f"{name} is too large to decode: {e}".split(" could be decompression bomb")[0]) from None
        except (UnidentifiedImageError, OSError) as e:
            raise ImageError(f"cannot read {name} as an image ({e.__class__.__name__})") from None

    @classmethod
    def from_path(cls, path: str | Path, preprocess: Preprocess = PREPROCESS) -> ImageSource:
        try:
            return cls(Path(path).read_bytes(), str(path), preprocess)
        except FileNotFoundError:
            raise ImageError(f"image not found: {path}") from None
        except OSError as e:
            raise ImageError(f"cannot read {path} ({e.strerror or e})") from None

    @property
    def pixels_count(self) -> int:
        return self.size[0] * self.size[1]

    def _rgb(self) -> Image.Image:
        with Image.open(io.BytesIO(self.data)) as img:
            return img.convert("RGB")

    def with_preprocess(self, preprocess: Preprocess) -> ImageSource:
        """The same file, for a model whose weights expect another preprocessing."""
        return ImageSource(self.data, self.name, preprocess)

    def input_codecs(self, input_shape: tuple[int, ...]) -> tuple[str, ...]:
        return input_codecs_for(self.preprocess, input_shape)

    def tensor(self) -> torch.Tensor:
        """The model input, as utils.image.load_image makes it with the same preprocessing."""
        return self.preprocess(self._rgb()).unsqueeze(0)

    def crop(self) -> Image.Image:
        split = split_preprocess(self.preprocess)
        if split is None:
            raise CodecError(f"{self.name}: this model's preprocessing does not split into a crop and a "
                             "normalisation, so only the image file can be sent")
        return split[0](self._rgb())

    def encode(self, codec: str) -> torch.Tensor:
        """The coded bytes of this image under an input codec, as a 1-D uint8 tensor."""
        if codec == "file":
            data = strip_metadata(self.data) if self.format == "JPEG" else self.data
        elif codec == "pixels":
            return torch.from_numpy(np.asarray(self.crop(), dtype=np.uint8).copy()).reshape(-1)
        elif codec in CROP_FORMATS:
            image_format, options = CROP_FORMATS[codec]
            out = io.BytesIO()
            self.crop().save(out, format=image_format, **options)
            data = out.getvalue()
        else:
            raise CodecError(f"{codec} is not an input codec")
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)


# JPEG markers whose segments are metadata (EXIF, XMP, ICC, comments): APP1..APP13, APP15, COM.
# APP0 (JFIF) and APP14 (Adobe: the colour transform) change how the pixels decode and stay.
_METADATA_MARKERS = frozenset([*range(0xE1, 0xEE), 0xEF, 0xFE])


def strip_metadata(jpeg: bytes) -> bytes:
    """A JPEG file without its metadata segments; the entropy-coded data is copied, not re-encoded,
    so it decodes to the same pixels. Bytes that are not a well-formed JPEG header come back as they are."""
    if jpeg[:2] != b"\xff\xd8":
        return jpeg
    out, i = bytearray(jpeg[:2]), 2
    while i + 4 <= len(jpeg) and jpeg[i] == 0xFF:
        marker = jpeg[i + 1]
        if marker == 0xDA:  # start of scan: the rest is image data
            break
        (length,) = struct.unpack(">H", jpeg[i + 2:i + 4])
        if length < 2 or i + 2 + length > len(jpeg):
            return jpeg
        if marker not in _METADATA_MARKERS:
            out += jpeg[i:i + 2 + length]
        i += 2 + length
    return bytes(out + jpeg[i:])


def _decode_image(codec: str, data: bytes | memoryview, shape: list[int], preprocess: Preprocess) -> torch.Tensor:
    height, width = shape[-2], shape[-1]
    split = split_preprocess(preprocess)
    if codec != "file" and split is None:
        raise CodecError(f"{codec}: this model takes its image only as a file")
    if codec == "pixels":
        assert split is not None
        pixels = np.frombuffer(bytearray(data), dtype=np.uint8).reshape(height, width, 3)
        return split[1](pixels).unsqueeze(0)
    limit = MAX_IMAGE_PIXELS_FACTOR * height * width
    formats = (CROP_FORMATS[codec][0],) if codec in CROP_FORMATS else IMAGE_FORMATS
    try:
        with Image.open(io.BytesIO(bytes(data)), formats=formats) as img:  # lazy: the header only
            w, h = img.size
            if codec in CROP_FORMATS and (w, h) != (width, height):
                raise CodecError(f"{codec} must carry a {width}x{height} {formats[0]}, got {w}x{h}")
            if w * h > limit:
                raise CodecError(f"image of {w}x{h} pixels is over the bound of {limit} "
                                 f"({MAX_IMAGE_PIXELS_FACTOR}x the model input)")
            rgb = img.convert("RGB")
    except CodecError:
        raise
    except Image.DecompressionBombError:  # Pillow's own bound, far above ours, refused at open
        raise CodecError(f"{codec}: image is over the bound of {limit} pixels") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise CodecError(f"{codec}: not a decodable {' or '.join(formats)} image "
                         f"({type(e).__name__})") from None
    if codec == "file":
        return preprocess(rgb).unsqueeze(0)
    assert split is not None
    return split[1](rgb).unsqueeze(0)


# -- the header, both sides ----------------------------------------------------------------------------
def encode(codec: str, tensor: torch.Tensor | None, source: ImageSource | None = None) -> torch.Tensor:
    """Coded bytes (1-D uint8) of `tensor` under a tensor codec, or of `source` under an input codec."""
    if is_input_codec(codec):
        if source is None:
            raise CodecError(f"{codec} codes an image file: give --image")
        return source.encode(codec)
    assert tensor is not None
    return encode_tensor(codec, tensor)


def codec_header(codec: str, decoded: torch.Tensor | tuple[int, ...]) -> dict:
    """header["codecs"][name] for a tensor coded with `codec` that decodes to `decoded`'s shape."""
    shape = decoded.shape if isinstance(decoded, torch.Tensor) else decoded
    return {"codec": codec, "dtype": "float32", "shape": list(shape)}


def declared_entries(header: dict) -> list[dict]:
    """header["tensors"] as the model will see them: each coded tensor by its declared decoded
    dtype and shape. CodecError for a codecs map that does not fit the tensors or a coded size the
    codec cannot produce; nothing of the body has been read."""
    entries = header["tensors"]
    codecs = header.get("codecs", {})
    if not isinstance(codecs, dict):
        raise CodecError('header["codecs"] must be an object')
    names = {e["name"] for e in entries}
    unknown = [name for name in codecs if name not in names]
    if unknown:
        raise CodecError(f"codecs for tensors the frame does not carry: {unknown!r:.80}")
    out = []
    for entry in entries:
        spec = codecs.get(entry["name"])
        if spec is None:
            out.append(entry)
            continue
        out.append(_check_spec(entry, spec))
    return out


def _check_spec(entry: dict, spec) -> dict:
    name = entry["name"]
    if not isinstance(spec, dict):
        raise CodecError(f"codec of {name!r:.60} must be an object")
    codec, dtype, shape = spec.get("codec"), spec.get("dtype"), spec.get("shape")
    if not isinstance(codec, str) or codec not in ALL_CODECS or codec == "none":
        raise CodecError(f"tensor {name!r:.60}: codec {codec!r:.40} is not one of {', '.join(ALL_CODECS[1:])}")
    if dtype != "float32":
        raise CodecError(f"tensor {name!r:.60}: codecs decode to float32, not {dtype!r:.40}")
    if (not isinstance(shape, list) or not 1 <= len(shape) <= 8
            or not all(type(d) is int and 1 <= d < 2**31 for d in shape) or math.prod(shape) >= 2**40):
        raise CodecError(f"tensor {name!r:.60}: decoded shape must be a list of 1..8 positive ints, got {shape!r:.80}")
    if entry["dtype"] != "uint8" or len(entry["shape"]) != 1:
        raise CodecError(f"tensor {name!r:.60}: a coded tensor travels as 1-D uint8 bytes")
    coded = entry["shape"][0]
    if codec in TENSOR_CODECS:
        least, most = coded_size_bound(codec, shape)
    elif len(shape) != 4 or shape[:2] != [1, 3]:
        raise CodecError(f"tensor {name!r:.60}: {codec} decodes to an image batch [1, 3, H, W], not {shape}")
    elif codec == "pixels":
        least = most = 3 * shape[2] * shape[3]
    else:  # an image file: the frame cap bounds its bytes, its header its pixels
        least, most = 1, 2**62
    if not least <= coded <= most:
        raise CodecError(f"tensor {name!r:.60}: {codec} codes {shape} in {least}..{most} bytes, not {coded}")
    return {"name": name, "dtype": dtype, "shape": shape, "codec": codec}


def decode(header: dict, tensors: dict[str, torch.Tensor], preprocess: Preprocess = PREPROCESS) -> dict[str, torch.Tensor]:
    """The frame's tensors decoded to what header["codecs"] declared (checked before by
    `declared_entries`); plain tensors pass through; an image prepared by `preprocess`, the
    model's own. CodecError when one does not decode to it."""
    codecs = header.get("codecs") or {}
    out = {}
    for name, tensor in tensors.items():
        spec = codecs.get(name)
        if spec is None:
            out[name] = tensor
            continue
        data = memoryview(tensor.contiguous().numpy())  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
        codec, shape = spec["codec"], spec["shape"]
        decoded = (_decode_image(codec, data, shape, preprocess) if is_input_codec(codec)
                   else _decode_tensor(codec, data, shape))
        if list(decoded.shape) != shape:
            raise CodecError(f"{codec} decoded {name!r:.60} to {list(decoded.shape)}, declared {shape}")
        out[name] = decoded
    return out


@dataclass(frozen=True)
class Coded:
    """What the edge sends for a partition: the payload tensors and header["codecs"]."""
    tensors: dict[str, torch.Tensor]
    codecs: dict[str, dict]
    coded_bytes: int


def encode_all(codec: str, tensors: dict[str, torch.Tensor]) -> Coded:
    """Code every crossing tensor with tensor codec `codec` (`none`: as they are)."""
    if codec == "none":
        return Coded(tensors, {}, sum(t.numel() * t.element_size() for t in tensors.values()))
    out = {name: encode_tensor(codec, t) for name, t in tensors.items()}
    specs = {name: codec_header(codec, t) for name, t in tensors.items()}
    return Coded(out, specs, sum(t.numel() for t in out.values()))


def encode_input(codec: str, name: str, source: ImageSource, input_shape: tuple[int, ...]) -> Coded:
    """The input tensor `name` (cut 0) sent as `source` coded with input codec `codec`."""
    payload = encode(codec, None, source)
    return Coded({name: payload}, {name: codec_header(codec, input_shape)}, payload.numel())
