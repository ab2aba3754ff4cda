"""What the lossy codecs cost in answers: per model, per cut, per lossy codec, the top-1
disagreement (in points, 0..100) with the uncompressed answer, over crops, flips and scales of
the real photos available offline (the two that ship with scikit-learn). Stored beside the
predictors (predictor/config/codec_accuracy.json) and read by the planner: under
`--accuracy-budget POINTS`, `auto` admits a lossy codec at a cut only where its measured loss is
within the budget. For models on seeded (not trained) weights the disagreement is large, so lossy
codecs are rarely admitted for them: that is the honest outcome.

  python -m predictor.codec_accuracy [--models alex_net le_net mobile_net] [--out FILE]
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import torch
from PIL import Image, ImageOps

from models import get_dnn_model
from net.wire import codecs as wire
from predictor.codec_profile import sample_photo_paths
from predictor.planner.codec_costs import ACCURACY_FILE
from utils.provenance import provenance

SHORT_SIDES = (256, 288, 320)
LOSSY_TENSOR = ("fp16", "int8")
LOSSY_INPUT = tuple(wire.JPEG_QUALITY)
DEFAULT_MODELS = ("alex_net", "le_net", "mobile_net")  # VGG16-BN: not measured (hours on 2 cores)


def crops() -> list[Image.Image]:
    """224x224 crops of the sample photos: 3 scales x 5 positions (centre, corners) x 2 flips."""
    out = []
    for path in sample_photo_paths():
        with Image.open(path) as img:
            rgb = img.convert("RGB")
        for side in SHORT_SIDES:
            w, h = rgb.size
            scale = side / min(w, h)
            resized = rgb.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
            W, H = resized.size
            for left, top in (((W - 224) // 2, (H - 224) // 2), (0, 0), (W - 224, 0), (0, H - 224), (W - 224, H - 224)):
                crop = resized.crop((left, top, left + 224, top + 224))
                out.extend([crop, ImageOps.mirror(crop)])
    return out


def normalise(images: list[Image.Image]) -> torch.Tensor:
    return torch.stack([wire.TORCHVISION_NORMALISE(img) for img in images])


def top1(logits: torch.Tensor) -> torch.Tensor:
    return logits.argmax(dim=1)


@torch.no_grad()
def measure_model(name: str, images: list[Image.Image]) -> dict:
    model = get_dnn_model(name)
    x = normalise(images)
    if tuple(x.shape[1:]) != tuple(model.input_shape[1:]):
        raise ValueError(f"{name} takes {model.input_shape}, not 224x224 RGB")
    reference = top1(model.forward_whole(x))
    result: dict[str, list[float]] = {c: [] for c in LOSSY_TENSOR}
    inputs = [x, *list(model.unit_outputs(x))[:-1]]
    for k, t in enumerate(inputs):
        for codec in LOSSY_TENSOR:
            decoded = torch.cat([wire.decode(_header(c), c.tensors)["x"]
                                 for c in (wire.encode_all(codec, {"x": t[i:i + 1]}) for i in range(len(t)))])
            answer = top1(model.run_cloud({"x": decoded}, model.prefix(k)))
            result[codec].append(round(100.0 * float((answer != reference).float().mean()), 2))
    for codec, quality in wire.JPEG_QUALITY.items():
        coded = []
        for img in images:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=quality)
            with Image.open(io.BytesIO(buf.getvalue())) as back:
                coded.append(back.convert("RGB"))
        answer = top1(model.forward_whole(normalise(coded)))
        result[codec] = [round(100.0 * float((answer != reference).float().mean()), 2)]
    return result


def _header(coded: wire.Coded) -> dict:
    return {"tensors": [{"name": n, "dtype": "uint8", "shape": [t.numel()]} for n, t in coded.tensors.items()],
            "codecs": coded.codecs}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--out", type=Path, default=ACCURACY_FILE)
    args = p.parse_args(argv)
    images = crops()
    models = {}
    for name in args.models:
        print(f"accuracy of lossy codecs: {name} on {len(images)} images", flush=True)
        models[name] = measure_model(name, images)
    doc = {"meta": provenance(images=len(images), photos=[p.name for p in sample_photo_paths()],
                              variants="3 scales (short side 256/288/320) x 5 crops x 2 flips per photo",
                              measure="top-1 disagreement with the uncompressed answer, points (0..100)",
                              weights="each model's default weights (seeded unless given)"),
           "models": models}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
