"""Measure what each codec costs on this machine, for one role, into the table the planner reads
(predictor/planner/codec_costs.py; predictor/config/<role>/codecs.json).

From real inputs: the two sample photos that ship with scikit-learn (china.jpg, flower.jpg), as
their own JPEG files. For every chain model, each unit's output on those photos is coded with each
tensor codec: the coded-size ratios per cut (for DAG models per node, by name), and encode/decode times fitted as a fixed part plus a
part per float32 byte (least squares over all those tensors). The image costs: decoding and
resizing/cropping a file (per source pixel), normalising the crop, encoding the crop as JPEG at
each quality, decoding such a JPEG, stripping a file's metadata. Medians of a few repeats.
"""
from __future__ import annotations

import io
import json
import statistics
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import numpy as np
import sklearn.datasets
import torch
from PIL import Image

from models import DAG_MODEL_NAMES, MODEL_NAMES, get_dnn_model, get_model
from net.wire import codecs as wire
from predictor.planner.codec_costs import TABLE_FILE, crop_decode_key
from utils.provenance import provenance

SAMPLE_PHOTOS = ("china.jpg", "flower.jpg")
TENSOR_CODECS = ("zstd", "fp16", "int8")
REPEATS = 5
FASHION_IMAGES = 8  # Fashion-MNIST test images whose activations give fashion_net's coded sizes


def sample_photo_paths() -> list[Path]:
    folder = Path(sklearn.datasets.__file__).parent / "images"
    return [folder / name for name in SAMPLE_PHOTOS]


def median_ms(fn: Callable[[], object], repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed ms >= 0, ms per byte >= 0) by least squares."""
    x = np.array([p[0] for p in points], dtype=float)
    y = np.array([p[1] for p in points], dtype=float)
    slope, intercept = np.polyfit(x, y, 1) if len(set(x)) > 1 else (float(y.mean() / max(x.mean(), 1)), 0.0)
    if intercept < 0:  # through the origin instead
        slope, intercept = float((x @ y) / (x @ x)), 0.0
    return max(float(intercept), 0.0), max(float(slope), 0.0)


def unit_inputs(model, x: torch.Tensor) -> list[torch.Tensor]:
    """What crosses at each cut k = 0..N-1: the input, then each unit's output but the last."""
    with torch.no_grad():
        outs = [o.detach().clone() for o in model.unit_outputs(x)]
    return [x, *outs[:-1]]


def model_inputs(name: str, photos: list[wire.ImageSource]) -> list[torch.Tensor]:
    """Real inputs of model `name`, prepared as its weights expect: the sample photos, or for
    fashion_net a few Fashion-MNIST test images (where the Debian data set is installed)."""
    from models import input_shape  # noqa: PLC0415
    from models.weights import preprocessing  # noqa: PLC0415
    shape = input_shape(name)
    if shape[1] == 3:
        return [p.with_preprocess(preprocessing(name)).tensor() for p in photos]
    from models.fashion import batch_from_uint8  # noqa: PLC0415
    from utils import fashion_mnist  # noqa: PLC0415
    if fashion_mnist.available():
        images, _ = fashion_mnist.load("test")
        return [batch_from_uint8(images[i:i + 1]) for i in range(FASHION_IMAGES)]
    # no data set here: the photos, grey and at the model's size (their activations are photo-like)
    return [torch.nn.functional.interpolate(p.tensor(), size=shape[-2:], mode="bilinear")[:, :shape[1]]
            for p in photos]


def measure_codec_table(role: str, threads: int, models: Iterable[str] = MODEL_NAMES,
                        progress: Callable[[str], None] | None = None,
                        dag_models: Iterable[str] = DAG_MODEL_NAMES) -> dict:
    torch.set_num_threads(threads)
    photos = [wire.ImageSource.from_path(p) for p in sample_photo_paths()]
    ratios: dict[str, dict[str, list[float] | dict[str, float]]] = {}
    points: dict[str, dict[str, list[tuple[int, float]]]] = {c: {"encode": [], "decode": []} for c in TENSOR_CODECS}
    for name in models:
        if progress:
            progress(name)
        model = get_dnn_model(name)
        per_codec: dict[str, list[list[float]]] = {c: [] for c in TENSOR_CODECS}
        for x in model_inputs(name, photos):
            for k, t in enumerate(unit_inputs(model, x)):
                raw = t.numel() * 4
                for codec in TENSOR_CODECS:
                    coded = wire.encode_all(codec, {"x": t})
                    if len(per_codec[codec]) <= k:
                        per_codec[codec].append([])
                    per_codec[codec][k].append(coded.coded_bytes / raw)
                    if name == "alex_net":  # the speeds: one model's real activations are enough
                        header = {"tensors": [{"name": "x", "dtype": "uint8", "shape": [coded.coded_bytes]}],
                                  "codecs": coded.codecs}
                        points[codec]["encode"].append((raw, median_ms(partial(wire.encode_all, codec, {"x": t}))))
                        points[codec]["decode"].append((raw, median_ms(partial(wire.decode, header, coded.tensors))))
        ratios[name] = {c: [round(statistics.mean(r), 5) for r in per_codec[c]] for c in TENSOR_CODECS}
    for name in dag_models:  # per node, by name: a DAG's crossing tensors are node outputs
        if progress:
            progress(name)
        dag = get_model(name)
        per_node: dict[str, dict[str, list[float]]] = {c: {} for c in TENSOR_CODECS}
        for x in model_inputs(name, photos):
            with torch.no_grad():
                outs = [x, *(o.detach().clone() for o in dag.unit_outputs(x))]
            for node, t in zip(dag.nodes, outs):
                for codec in TENSOR_CODECS:
                    ratio = wire.encode_all(codec, {"x": t}).coded_bytes / (t.numel() * 4)
                    per_node[codec].setdefault(node, []).append(ratio)
        ratios[name] = {c: {node: round(statistics.mean(r), 5) for node, r in per_node[c].items()}
                        for c in TENSOR_CODECS}
    speed = {}
    for codec in TENSOR_CODECS:
        e_fixed, e_per = _fit(points[codec]["encode"])
        d_fixed, d_per = _fit(points[codec]["decode"])
        speed[codec] = {"encode_fixed_ms": e_fixed, "encode_ms_per_byte": e_per,
                        "decode_fixed_ms": d_fixed, "decode_ms_per_byte": d_per}
    return {"meta": provenance(role=role, threads=threads, photos=list(SAMPLE_PHOTOS)),
            "speed": speed, "image": _image_costs(photos), "ratios": ratios}


def _image_costs(photos: list[wire.ImageSource]) -> dict:
    """Per photo, medians of: decoding + resizing + cropping (per source pixel), normalising the
    crop, stripping the file's metadata, encoding the crop with each codec that re-encodes it, and
    decoding such a crop (one entry for every JPEG quality: `jpeg_decode_ms`, measured at 90)."""
    prep, normalise, strip = [], [], []
    encode: dict[str, list[float]] = {c: [] for c in wire.CROP_FORMATS}
    # what each decode entry is measured on: every JPEG quality shares one, measured at 90
    decoded_by = {crop_decode_key(c): c for c in wire.CROP_FORMATS if c not in wire.JPEG_QUALITY} | {
        "jpeg_decode_ms": "jpeg90"}
    decode: dict[str, list[float]] = {key: [] for key in decoded_by}
    for photo in photos:
        prep.append(median_ms(photo.crop) / photo.pixels_count)
        crop = photo.crop()
        normalise.append(median_ms(partial(wire.TORCHVISION_NORMALISE, crop)))
        strip.append(median_ms(partial(wire.strip_metadata, photo.data)))
        for codec, (image_format, options) in wire.CROP_FORMATS.items():
            encode[codec].append(median_ms(partial(crop.save, io.BytesIO(), format=image_format, **options)))
        for key, codec in decoded_by.items():
            data = photo.encode(codec).numpy().tobytes()

            def decode_crop(data=data):
                with Image.open(io.BytesIO(data)) as img:
                    img.convert("RGB")
            decode[key].append(median_ms(decode_crop))
    return {"prep_fixed_ms": 0.0, "prep_ms_per_pixel": statistics.mean(prep),
            "normalise_ms": statistics.mean(normalise), "strip_ms": statistics.mean(strip),
            **{key: statistics.mean(v) for key, v in decode.items()},
            **{f"{codec}_encode_ms": statistics.mean(v) for codec, v in encode.items()}}


def write_codec_table(role: str, threads: int, config_dir: Path, models: Iterable[str] = MODEL_NAMES,
                      dag_models: Iterable[str] = DAG_MODEL_NAMES) -> Path:
    doc = measure_codec_table(role, threads, models, progress=lambda name: print(f"codecs: {name}", flush=True),
                              dag_models=dag_models)
    path = config_dir / role / TABLE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return path
