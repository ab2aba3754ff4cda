"""What each codec makes of each cut: the coded bytes of every cut's tensor of every chain model on
a real photo (each model's own preprocessing), the tensor codecs' encode and decode time, the
input codecs' bytes at cut 0, and the chain decision time with codecs.

  python -m benchmarks.codecs [--models alex_net ...] [--image FILE] [--repeats N] [--out CSV]

How the chosen (cut, codec) fares against the oracle, today's float32 plan and the JPEG upload is
measured by the decision-quality benchmarks (benchmarks.decision_quality, --codec auto); this one
says what the planner weighs: per cut, `float32_bytes` and the bytes under zstd, fp16 and int8
(each cut's tensor coded as the wire codes one request), their encode and decode ms at 1 thread
(medians of --repeats; the decoder's bounded zstd included), and at cut 0 the file, pixels and
JPEG qualities' bytes. A fashion_net-like model without image codecs is fed its own real input
(predictor.codec_profile.model_inputs). Decision time: median us per `best_cut_and_codec` with
codec none alone and with auto's exact codecs (image in hand), 1 thread. Written: the CSV, its
provenance beside it with the decision times.
"""
from __future__ import annotations

import argparse
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR
from models import DAG_MODEL_NAMES, MODEL_NAMES, get_dnn_model
from models.weights import preprocessing
from net.wire import codecs as wire
from predictor import LatencyPredictor, Link
from predictor.codec_profile import median_ms, model_inputs, sample_photo_paths, unit_inputs
from predictor.planner import ChainPlanner, CodecTable
from utils.provenance import provenance, write_csv_with_provenance

TENSOR = ("zstd", "fp16", "int8")
CHAIN_MODELS = tuple(n for n in MODEL_NAMES if n not in DAG_MODEL_NAMES)
COLUMNS = ["model", "cut", "layer", "float32_bytes", *TENSOR, *wire.INPUT_CODECS,
           *(f"{c}_{side}_ms" for c in TENSOR for side in ("encode", "decode"))]


def bytes_rows(model, planner: ChainPlanner, source: wire.ImageSource | None, x: torch.Tensor,
               repeats: int) -> list[dict]:
    """Each cut's tensor coded with each tensor codec (bytes, encode and decode ms); the input codecs at cut 0."""
    image_codecs = source.input_codecs(tuple(model.input_shape)) if source is not None else ()
    rows = []
    for k, t in enumerate(unit_inputs(model, x)):
        row: dict = {"model": model.name, "cut": k, "layer": planner.labels[k], "float32_bytes": t.numel() * 4}
        for codec in TENSOR:
            coded = wire.encode_all(codec, {"x": t})
            row[codec] = coded.coded_bytes
            row[f"{codec}_encode_ms"] = round(median_ms(partial(wire.encode_all, codec, {"x": t}), repeats), 4)
            row[f"{codec}_decode_ms"] = round(median_ms(partial(wire.decode, {"codecs": coded.codecs}, coded.tensors),
                                                        repeats), 4)
        for codec in wire.INPUT_CODECS:
            row[codec] = source.encode(codec).numel() if (k == 0 and source is not None and codec in image_codecs) else ""
        rows.append(row)
    return rows


def decision_time_us(planner: ChainPlanner, source: wire.ImageSource | None, codec: str,
                     repeats: int = 20_000) -> float:
    planner.use_codecs(codec, 0.0, source)
    link = Link(5.85)
    best = planner.best_cut_and_codec
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            best(link)
        times.append((time.perf_counter() - t0) / repeats * 1e6)
    return statistics.median(times)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(CHAIN_MODELS), choices=CHAIN_MODELS)
    p.add_argument("--image", type=Path, default=sample_photo_paths()[0], help="default: scikit-learn's china.jpg")
    p.add_argument("--repeats", type=int, default=5, help="runs of each encode and decode (median; default 5)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "codecs_bytes.csv")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    try:
        photo = wire.ImageSource.from_path(args.image)
    except ValueError as e:
        p.error(str(e))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    edge_predictor, edge_table = LatencyPredictor.load("edge"), CodecTable.load("edge")
    rows, decision = [], {}
    try:
        for name in args.models:
            model = get_dnn_model(name)
            source: wire.ImageSource | None = photo.with_preprocess(preprocessing(name))
            assert source is not None
            if not source.input_codecs(tuple(model.input_shape)):
                source, x = None, model_inputs(name, [photo])[0]
            else:
                x = source.tensor()
            planner = ChainPlanner(model, edge_predictor, edge_predictor, 10.0, codec_tables=(edge_table, edge_table))
            rows.extend(bytes_rows(model, planner, source, x, args.repeats))
            decision[name] = {"none_us": round(decision_time_us(planner, source, "none"), 3),
                              "auto_us": round(decision_time_us(planner, source, "auto"), 3),
                              "auto_codecs": len(planner.codecs.allowed)}
            d = decision[name]
            print(f"{name:<14} {model.num_units:>3} cuts; decision {d['none_us']:.2f} us with none, {d['auto_us']:.2f} "
                  f"us with auto ({d['auto_codecs']} codecs)", flush=True)
    finally:
        torch.set_num_threads(threads)
    meta = provenance(threads=1, image=args.image.name, image_bytes=len(photo.data), repeats=args.repeats,
                      decision_time_us=decision, decision_link_mbps=5.85, edge_slowdown=10.0)
    write_csv_with_provenance(args.out, rows, COLUMNS, meta)
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
