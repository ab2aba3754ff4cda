"""Codecs chosen with the cut, measured against the baselines every real system starts from.

  python -m benchmarks.codecs [--models alex_net ...] [--bandwidths 3g lte wifi] [--edge-slowdown F]
                              [--repeats N] [--image FILE] [--out CSV]

For each model and bandwidth, the measured latency through a real cloud on 127.0.0.1 (a
net.cloud.local.LocalCloud child at 1 torch thread) and the paced uplink (LinkPacer, RTT 0) of:
  chosen      the planner's (cut, codec) with --codec auto at --accuracy-budget 0 (exact codecs:
              none, zstd, pixels, file) on the real photo;
  none        today's plan: the best cut sending float32 (codec none);
  edge_only   everything on the edge;
  cloud_only  cut 0 sending the float32 input tensor (what the original does);
  jpeg90      cut 0 uploading the 224x224 crop as a JPEG at quality 90 (what a real app does);
  budget1     the planner's (cut, codec) with auto at --accuracy-budget 1: lossy codecs admitted
              where the shipped accuracy table (predictor/codec_accuracy.py) measured them within
              1 top-1 point (on seeded weights: see the README).
Every variant starts its clock with the image file in hand: decoding and preprocessing it on the
edge is edge time (x --edge-slowdown, default 10), on the cloud cloud time. Runs are interleaved
(each round runs every variant once) and each figure is the median of --repeats rounds; the edge
is this process at 1 thread pinned to core 0, the cloud pinned to core 1 (where the machine has
them). Cloud costs are predicted from the 1-thread (edge) profile and codec table, as in
benchmarks.decision_quality. The chosen plan's answer is checked against local inference.

Also written: bytes per cut per codec (NAME_bytes.csv: each cut's tensor on the photo coded with
each tensor codec, and the input codecs at cut 0), and the chain decision time with codecs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR
from benchmarks.measure import CLOUD_CORE, EDGE_CORE, HOST, can_pin, check_bandwidths, geomean, pin_threads
from models import MODEL_NAMES, get_dnn_model
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from net.emulation.link import LinkPacer, parse_bandwidth
from net.wire import codecs as wire
from predictor import LatencyPredictor, Link
from predictor.codec_profile import sample_photo_paths, unit_inputs
from predictor.planner import ChainPlanner, CodecTable, ImageInfo, allowed_codecs
from utils.classes import top_k
from utils.provenance import provenance, write_csv_with_provenance

VARIANTS = ("chosen", "none", "edge_only", "cloud_only", "jpeg90", "budget1")
BUDGET = 1.0
COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "edge_slowdown", "variant", "cut", "codec", "lossy",
           "coded_bytes", "transfer_bytes", "predicted_ms", "median_ms", "min_ms", "max_ms", "runs"]
SUMMARY_COLUMNS = ["model", "bandwidth", "chosen_cut", "chosen_codec", "chosen_ms", "none_cut", "none_ms",
                   "jpeg90_ms", "edge_only_ms", "cloud_only_ms", "speedup_vs_none", "chosen_over_jpeg90",
                   "budget1_cut", "budget1_codec", "budget1_ms", "budget1_speedup_vs_none", "budget1_over_jpeg90"]
BYTES_COLUMNS = ["model", "cut", "layer", "float32_bytes", "zstd", "fp16", "int8", "file", "pixels",
                 "jpeg75", "jpeg90", "jpeg95"]
WARMUP_ROUNDS = 1


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Variants:
    """The five plans of one model on one image, each a (cut, allowed codecs) the runner obeys."""

    def __init__(self, planner: ChainPlanner, source: wire.ImageSource, same_decoder: bool):
        self.planner, self.source = planner, source
        n = planner.num_units
        auto = allowed_codecs("auto", 0.0, True, same_decoder)
        self.allowed = {"chosen": auto, "none": ("none",), "edge_only": ("none",), "cloud_only": ("none",),
                        "jpeg90": ("jpeg90",), "budget1": allowed_codecs("auto", BUDGET, True, same_decoder)}
        self.budget = {"budget1": BUDGET}
        self.images = {name: ImageInfo.of(source, allowed) for name, allowed in self.allowed.items()}
        self.fixed_cut = {"edge_only": n, "cloud_only": 0, "jpeg90": 0}

    def plan(self, variant: str, link: Link):
        self.planner.configure_codecs(self.allowed[variant], self.images[variant], self.budget.get(variant, 0.0))
        if variant in self.fixed_cut:
            return self.planner.cut(self.fixed_cut[variant], link)
        return self.planner.best(link)


def run_case(model, planner: ChainPlanner, source: wire.ImageSource, cloud: LocalCloud, label: str,
             repeats: int, edge_slowdown: float, local_top5: list) -> tuple[list[dict], dict]:
    mbps = parse_bandwidth(label)
    link = Link(mbps)
    with CloudClient(HOST, cloud.port, pacer=LinkPacer(mbps)) as client:
        client.connect()
        client.probe(8 * 1024)
        variants = Variants(planner, source, client.same_image_decoder)
        plans = {v: variants.plan(v, link) for v in VARIANTS}
        totals: dict[str, list[float]] = {v: [] for v in VARIANTS}
        reports = {}
        for round_ in range(WARMUP_ROUNDS + repeats):
            for v in VARIANTS:
                variants.plan(v, link)  # configures the planner's codecs for this variant
                report = collaborative_inference(model, planner, None, client, link, partition=plans[v].partition,
                                                 edge_slowdown=edge_slowdown, source=source,
                                                 slowdown_by_repeating=True)
                if report.fallback:
                    raise SystemExit(f"error: {model.name} {v}: the cloud failed: {report.fallback_reason}")
                if round_ >= WARMUP_ROUNDS:
                    totals[v].append(report.measured_ms.total)
                reports[v] = report
    if [c for c, _ in reports["chosen"].top5] != [c for c, _ in local_top5]:
        raise SystemExit(f"error: {model.name} at {label}: the chosen plan's answer differs from local inference")
    rows = []
    for v in VARIANTS:
        r = reports[v]
        rows.append({"model": model.name, "bandwidth": label, "bandwidth_mbps": mbps, "edge_slowdown": edge_slowdown,
                     "variant": v, "cut": r.cut_point, "codec": r.codec, "lossy": r.lossy,
                     "coded_bytes": r.coded_bytes, "transfer_bytes": r.transfer_bytes,
                     "predicted_ms": round(plans[v].total_ms, 2), "median_ms": round(statistics.median(totals[v]), 2),
                     "min_ms": round(min(totals[v]), 2), "max_ms": round(max(totals[v]), 2), "runs": len(totals[v])})
    by = {row["variant"]: row for row in rows}
    summary = {"model": model.name, "bandwidth": label, "chosen_cut": by["chosen"]["cut"],
               "chosen_codec": by["chosen"]["codec"], "chosen_ms": by["chosen"]["median_ms"],
               "none_cut": by["none"]["cut"], "none_ms": by["none"]["median_ms"],
               "jpeg90_ms": by["jpeg90"]["median_ms"], "edge_only_ms": by["edge_only"]["median_ms"],
               "cloud_only_ms": by["cloud_only"]["median_ms"],
               "speedup_vs_none": round(by["none"]["median_ms"] / by["chosen"]["median_ms"], 3),
               "chosen_over_jpeg90": round(by["chosen"]["median_ms"] / by["jpeg90"]["median_ms"], 3),
               "budget1_cut": by["budget1"]["cut"], "budget1_codec": by["budget1"]["codec"],
               "budget1_ms": by["budget1"]["median_ms"],
               "budget1_speedup_vs_none": round(by["none"]["median_ms"] / by["budget1"]["median_ms"], 3),
               "budget1_over_jpeg90": round(by["budget1"]["median_ms"] / by["jpeg90"]["median_ms"], 3)}
    return rows, summary


def bytes_rows(model, planner: ChainPlanner, source: wire.ImageSource) -> list[dict]:
    """Each cut's tensor on the photo, coded with each tensor codec; the input codecs at cut 0."""
    rows = []
    for k, t in enumerate(unit_inputs(model, source.tensor())):
        row = {"model": model.name, "cut": k, "layer": planner.labels[k], "float32_bytes": t.numel() * 4}
        for codec in ("zstd", "fp16", "int8"):
            row[codec] = wire.encode_all(codec, {"x": t}).coded_bytes
        for codec in wire.INPUT_CODECS:
            row[codec] = source.encode(codec).numel() if k == 0 else ""
        rows.append(row)
    return rows


def decision_time_us(planner: ChainPlanner, source: wire.ImageSource, allowed: tuple[str, ...],
                     repeats: int = 20_000) -> float:
    planner.configure_codecs(allowed, ImageInfo.of(source, allowed))
    link = Link(5.85)
    best = planner.best_cut_and_codec
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(repeats):
            best(link)
        times.append((time.perf_counter() - t0) / repeats * 1e6)
    return min(times)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["alex_net"], choices=MODEL_NAMES)
    p.add_argument("--bandwidths", nargs="+", default=["3g", "lte", "wifi"])
    p.add_argument("--edge-slowdown", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--image", type=Path, default=sample_photo_paths()[0], help="default: scikit-learn's china.jpg")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "codecs.csv")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    check_bandwidths(p, args.bandwidths)
    try:
        source = wire.ImageSource.from_path(args.image)
    except ValueError as e:
        p.error(str(e))
    summary_out = args.out.with_name(f"{args.out.stem}_summary.csv")
    bytes_out = args.out.with_name(f"{args.out.stem}_bytes.csv")

    threads_before, affinity_before = torch.get_num_threads(), os.sched_getaffinity(0)
    pinned = can_pin()
    pinning = (f"edge (this process) on core {EDGE_CORE}, cloud (child) on core {CLOUD_CORE}" if pinned
               else f"none: cores {sorted(affinity_before)} do not include {EDGE_CORE} and {CLOUD_CORE}")
    torch.set_num_threads(1)
    edge_predictor = LatencyPredictor.load("edge")
    edge_table = CodecTable.load("edge")
    models = {name: get_dnn_model(name) for name in args.models}
    rows, summaries, byte_rows, decision = [], [], [], {}
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    print(f"edge: this process, 1 thread, {args.edge_slowdown:g}x slower; cloud: LocalCloud child, 1 thread; "
          f"pinning: {pinning}; image {args.image} ({len(source.data)} bytes); {args.repeats} interleaved rounds")
    try:
        with LocalCloud(args.models, threads=1) as cloud:
            if pinned:
                pin_threads(cloud.process.pid, {CLOUD_CORE})
                pin_threads(os.getpid(), {EDGE_CORE})
            for name, model in models.items():
                planner = ChainPlanner(model, edge_predictor, edge_predictor, args.edge_slowdown,
                                       codec_tables=(edge_table, edge_table))
                with torch.no_grad():
                    local_top5 = top_k(model.forward_whole(source.tensor()))
                byte_rows.extend(bytes_rows(model, planner, source))
                auto = allowed_codecs("auto", 0.0, True, True)
                decision[name] = {"none_us": decision_time_us(planner, source, ("none",)),
                                  "auto_us": decision_time_us(planner, source, auto), "auto_codecs": len(auto)}
                for label in args.bandwidths:
                    log(f"{name} at {label}: elapsed {time.perf_counter() - t_start:.0f} s")
                    case_rows, summary = run_case(model, planner, source, cloud, label, args.repeats,
                                                  args.edge_slowdown, local_top5)
                    rows.extend(case_rows)
                    summaries.append(summary)
                    print(f"{name:<10} {label:>5}: chosen cut {summary['chosen_cut']} {summary['chosen_codec']:<6} "
                          f"{summary['chosen_ms']:8.1f} ms | none (cut {summary['none_cut']}) {summary['none_ms']:8.1f} | "
                          f"jpeg90 {summary['jpeg90_ms']:7.1f} | edge-only {summary['edge_only_ms']:8.1f} | "
                          f"cloud-only float32 {summary['cloud_only_ms']:8.1f} | {summary['speedup_vs_none']:.2f}x "
                          f"vs none, {summary['chosen_over_jpeg90']:.2f}x jpeg90's time | budget 1: cut "
                          f"{summary['budget1_cut']} {summary['budget1_codec']} {summary['budget1_ms']:.1f}", flush=True)
    finally:
        if pinned:
            pin_threads(os.getpid(), affinity_before)
        torch.set_num_threads(threads_before)
    total_s = time.perf_counter() - t_start
    geo_none = geomean([s["speedup_vs_none"] for s in summaries])
    geo_jpeg = geomean([s["chosen_over_jpeg90"] for s in summaries])
    geo_b_none = geomean([s["budget1_speedup_vs_none"] for s in summaries])
    geo_b_jpeg = geomean([s["budget1_over_jpeg90"] for s in summaries])
    print(f"geomean: chosen {geo_none:.2f}x faster than the none plan; chosen takes {geo_jpeg:.2f}x the jpeg90 "
          f"upload's time (exact codecs only, budget 0); at budget 1: {geo_b_none:.2f}x faster than none, "
          f"{geo_b_jpeg:.2f}x jpeg90's time")
    for name, d in decision.items():
        print(f"decision time {name}: {d['none_us']:.2f} us with none only, {d['auto_us']:.2f} us with auto "
              f"({d['auto_codecs']} codecs: {d['auto_us'] / d['auto_codecs']:.2f} us per codec considered)")
    meta = provenance(host=HOST, edge_threads=1, cloud_threads=1, edge_slowdown=args.edge_slowdown, pinning=pinning,
                      image=str(args.image.name), image_bytes=len(source.data), repeats=args.repeats,
                      warmup_rounds=WARMUP_ROUNDS, rtt_ms=0, link="net.emulation.link.LinkPacer",
                      predictors="edge profile and edge codec table for both sides (cloud at 1 thread)",
                      loadavg_before=" ".join(f"{v:.2f}" for v in load_before),
                      loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()), run_s=round(total_s),
                      geomean_speedup_vs_none=round(geo_none, 3), geomean_chosen_over_jpeg90=round(geo_jpeg, 3),
                      geomean_budget1_speedup_vs_none=round(geo_b_none, 3),
                      geomean_budget1_over_jpeg90=round(geo_b_jpeg, 3),
                      decision_time_us={k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in decision.items()})
    write_csv_with_provenance(args.out, rows, COLUMNS, meta)
    write_csv_with_provenance(summary_out, summaries, SUMMARY_COLUMNS, meta)
    write_csv_with_provenance(bytes_out, byte_rows, BYTES_COLUMNS, meta)
    print(f"wrote {args.out}, {summary_out}, {bytes_out}")
    return rows


if __name__ == "__main__":
    main()
