"""What the lossy codecs cost in answers, per model, per cut, per lossy codec, in top-1 points
(0..100). Stored beside the predictors (predictor/config/codec_accuracy.json) and read by the
planner: under `--accuracy-budget POINTS`, `auto` admits a lossy codec at a cut only where its
measured loss is within the budget, and only for the weights it was measured on (their
fingerprint is stored with the figures).

Two measures, as each model's data allows:
- fashion_net (trained, labelled data): points of top-1 accuracy lost on the 10,000 Fashion-MNIST
  test images (Debian's dataset-fashion-mnist): accuracy uncompressed minus accuracy through the
  codec (negative when the codec happened to help);
- every RGB model: top-1 disagreement with the uncompressed answer over views of the real photos
  available offline (the two that ship with scikit-learn): windows at 5 scales and up to 9
  positions, each also mirrored (2 photos x 27 windows x 2 = 108 images), each prepared by the
  model's own preprocessing. The views of two photos are correlated: the figure says how stable
  the answer is under the codec, not an accuracy on a data set.
Each image is coded as the wire codes a request (a batch of one, through net.wire.codecs'
encoders and decoders); the JPEG qualities code the model's crop of the image, at cut 0.

  python -m predictor.codec_accuracy [--models efficient_net fashion_net alex_net ...] [--out FILE]
"""
from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from PIL import Image, ImageOps

from models import get_dnn_model
from models.fashion import batch_from_uint8
from models.split import SplitModel
from models.weights import preprocessing
from net.wire import codecs as wire
from predictor.codec_profile import sample_photo_paths
from predictor.planner.codec_costs import ACCURACY_FILE
from utils import fashion_mnist
from utils.provenance import provenance

LOSSY_TENSOR = ("fp16", "int8")
# (fraction of the photo's width and height a window covers, its positions on a grid per axis)
WINDOWS = ((1.0, 1), (0.85, 2), (0.7, 2), (0.55, 3), (0.4, 3))
# VGG16-BN is left out by default, the slowest by far (53 cuts x 2 codecs, each through the rest of the
# network on 108 images); `--models vgg_net` measures it.
DEFAULT_MODELS = ("efficient_net", "fashion_net", "alex_net", "le_net", "mobile_net")
# Where the JPEG codecs' disagreements fall is reported apart for views the model answers with at
# least this top-1 probability: flips among unsure answers say less about accuracy.
CONFIDENT = 0.4
BATCH = 256  # images run through the cloud's part at once (each was coded alone)


def views() -> list[Image.Image]:
    """The photos' windows (WINDOWS: 1 + 4 + 4 + 9 + 9 = 27 per photo), each also mirrored."""
    out = []
    for path in sample_photo_paths():
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        w, h = rgb.size
        for fraction, steps in WINDOWS:
            ww, wh = round(w * fraction), round(h * fraction)
            for i in range(steps):
                for j in range(steps):
                    left = 0 if steps == 1 else round(i * (w - ww) / (steps - 1))
                    top = 0 if steps == 1 else round(j * (h - wh) / (steps - 1))
                    window = rgb.crop((left, top, left + ww, top + wh))
                    out.extend([window, ImageOps.mirror(window)])
    return out


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")  # lossless: the image in hand is exactly the view
    return buf.getvalue()


def _roundtrip(codec: str, t: torch.Tensor) -> torch.Tensor:
    """A batch of one through a tensor codec, as the edge encodes it and the cloud decodes it."""
    coded = wire.encode_all(codec, {"x": t})
    return wire.decode({"codecs": coded.codecs}, coded.tensors)["x"]


def _batches(x: torch.Tensor) -> Iterator[torch.Tensor]:
    yield from torch.split(x, BATCH)


@torch.no_grad()
def _run_cloud(model: SplitModel, k: int, x: torch.Tensor) -> torch.Tensor:
    return torch.cat([model.run_cloud({"x": b}, model.prefix(k)) for b in _batches(x)])


@torch.no_grad()
def _cut_inputs(model: SplitModel, x: torch.Tensor) -> list[torch.Tensor]:
    """The tensor sent at each cut 0..N-1 (the input, then each unit's output but the last)."""
    per_batch = [[b, *list(model.unit_outputs(b))[:-1]] for b in _batches(x)]
    return [torch.cat(parts) for parts in zip(*per_batch)]


def tensor_codec_answers(model: SplitModel, x: torch.Tensor) -> Iterator[tuple[str, int, torch.Tensor]]:
    """(codec, cut, top-1 of every image with that cut's tensor through that codec)."""
    for k, t in enumerate(_cut_inputs(model, x)):
        for codec in LOSSY_TENSOR:
            decoded = torch.cat([_roundtrip(codec, t[i:i + 1]) for i in range(len(t))])
            yield codec, k, _run_cloud(model, k, decoded).argmax(dim=1)


@torch.no_grad()
def measure_photos(model: SplitModel, images: list[Image.Image]) -> dict[str, list[float]]:
    """Top-1 disagreement (points) with the uncompressed answer, per lossy codec and cut."""
    return measure_photos_with_confidence(model, images)[0]


@torch.no_grad()
def measure_photos_with_confidence(model: SplitModel, images: list[Image.Image]) -> tuple[dict[str, list[float]], dict]:
    """measure_photos, and where the JPEG codecs' disagreements fall: how many views the model
    answers with top-1 probability >= CONFIDENT, and each JPEG codec's changed answers among
    those and among the rest."""
    prep = preprocessing(model.name)
    x = torch.stack([prep(img) for img in images])
    if tuple(x.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{model.name} takes {model.input_shape}, its preprocessing gave {list(x.shape[1:])}")
    logits = _run_cloud(model, 0, x)
    reference = logits.argmax(dim=1)  # (not the softmax's: a seeded network's logits may overflow to inf)
    confident = logits.double().softmax(dim=1).max(dim=1).values >= CONFIDENT  # NaN (overflow): not confident
    by_confidence: dict = {"top1_probability_at_least": CONFIDENT, "views": int(confident.sum()),
                           "changed": {}, "other_views": int((~confident).sum()), "changed_in_other_views": {}}
    points = lambda answer: round(100.0 * float((answer != reference).float().mean()), 2)  # noqa: E731
    result: dict[str, list[float]] = {c: [] for c in LOSSY_TENSOR}
    for codec, _, answer in tensor_codec_answers(model, x):
        result[codec].append(points(answer))
    input_shape = tuple(model.input_shape)
    jpeg_codecs = [c for c in wire.input_codecs_for(prep, input_shape) if c in wire.JPEG_QUALITY]
    sources = [wire.ImageSource(_png(img), f"view {i}", prep) for i, img in enumerate(images)]
    for codec in jpeg_codecs:
        decoded = []
        for source in sources:
            coded = wire.encode_input(codec, "x", source, input_shape)
            decoded.append(wire.decode({"codecs": coded.codecs}, coded.tensors, prep)["x"])
        answer = _run_cloud(model, 0, torch.cat(decoded)).argmax(dim=1)
        result[codec] = [points(answer)]
        changed = answer != reference
        by_confidence["changed"][codec] = int((changed & confident).sum())
        by_confidence["changed_in_other_views"][codec] = int((changed & ~confident).sum())
    return result, by_confidence


@torch.no_grad()
def measure_labelled(model: SplitModel, images: torch.Tensor, labels: torch.Tensor) -> dict[str, list[float]]:
    """Top-1 accuracy points lost (uncompressed minus coded), per lossy tensor codec and cut."""
    accuracy = lambda answer: 100.0 * float((answer == labels).float().mean())  # noqa: E731
    reference = accuracy(_run_cloud(model, 0, images).argmax(dim=1))
    result: dict[str, list[float]] = {c: [] for c in LOSSY_TENSOR}
    for codec, _, answer in tensor_codec_answers(model, images):
        result[codec].append(round(reference - accuracy(answer), 2))
    return result


def measure_model(name: str, images: list[Image.Image]) -> tuple[dict[str, list[float]], dict]:
    """(points per codec and cut, how they were measured) for one model on its default weights."""
    model = get_dnn_model(name)
    if name == "fashion_net":
        data, labels = fashion_mnist.load("test")
        how = {"measure": "top-1 accuracy points lost on labelled data (uncompressed minus coded)",
               "data": "Fashion-MNIST test split", "images": int(len(labels))}
        figures = measure_labelled(model, batch_from_uint8(data), torch.from_numpy(labels.astype("int64")))
    else:
        how = {"measure": "top-1 disagreement with the uncompressed answer, points",
               "data": " and ".join(p.name for p in sample_photo_paths()) + ": windows at 5 scales x up to 9 "
                       "positions, each mirrored", "images": len(images)}
        figures, how["jpeg_by_confidence"] = measure_photos_with_confidence(model, images)
    return figures, {**how, "fingerprint": model.fingerprint}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--out", type=Path, default=ACCURACY_FILE)
    args = p.parse_args(argv)
    if "fashion_net" in args.models and not fashion_mnist.available():
        p.error(f"fashion_net is measured on the Fashion-MNIST test split, not found in {fashion_mnist.data_dir()} "
                "(Debian: apt install dataset-fashion-mnist)")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the answers' last bits depend on it: the same for every run
    try:
        images = views()
        models, measured = {}, {}
        for name in args.models:
            print(f"accuracy of the lossy codecs: {name}", flush=True)
            models[name], measured[name] = measure_model(name, images)
            worst = {c: max(v) for c, v in models[name].items()}
            print(f"  {measured[name]['images']} images; worst points per codec: {worst}", flush=True)
    finally:
        torch.set_num_threads(threads)
    doc = {"meta": provenance(threads=1, weights="each model's default weights (see `measured`: their fingerprints)"),
           "measured": measured, "models": models}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
