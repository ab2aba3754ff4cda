"""edge_api.py's body: parse the flags, learn the uplink, run one collaborative inference, report."""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import torch

from models import ALL_MODEL_NAMES, WeightsUnavailable, categories, get_model, model_input
from models.weights import preprocessing
from net.apps.cli import (
    add_codec_args,
    add_connection_args,
    add_objective_args,
    add_timeout_arg,
    bandwidth_arg,
    check_codec_args,
    configure_codecs,
    non_negative_ms,
    objective_from_args,
    slowdown_arg,
    weights_arg,
)
from net.cloud.local import LocalCloud
from net.cloud.server import DEFAULT_HOST, DEFAULT_PORT
from net.edge.bandwidth import SpeedtestUnavailable, measure_bandwidth_mbps, speedtest_uplink_mbps
from net.edge.client import CloudClient, CloudRefused, CloudUnavailable
from net.edge.runner import EdgeReport, collaborative_inference
from net.emulation.link import LinkPacer
from net.wire import auth
from net.wire.codecs import ImageSource
from predictor import LatencyPredictor, Link, planner_for
from predictor.deploy import DEFAULT_THREADS, warn_if_other_machine
from utils.device import DeviceError, resolve_device
from utils.errors import WEIGHTS_ERRORS, weights_error_line
from utils.image import ImageError, resolve_image_path

SPEEDTEST = "speedtest"


def bandwidth_or_speedtest(text: str) -> float | str:
    return SPEEDTEST if text.strip().lower() == SPEEDTEST else bandwidth_arg(text)


def build_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_args(p, DEFAULT_HOST, DEFAULT_PORT)
    p.add_argument("--token", help=f"shared token the cloud requires (default: ${auth.TOKEN_ENV} if set)")
    p.add_argument("-t", "--model", default="alex_net", choices=ALL_MODEL_NAMES, metavar="MODEL",
                   help=f"one of {', '.join(ALL_MODEL_NAMES)} (default alex_net)")
    p.add_argument("--bandwidth", type=bandwidth_or_speedtest, metavar="MBPS|3g|lte|wifi|speedtest",
                   help="uplink in Mbit/s or a preset; shapes the uplink to it (see --no-shaping). "
                        "'speedtest' measures the internet uplink with speedtest-cli (needs "
                        "internet; not shaped). Default: measure the uplink to the cloud")
    p.add_argument("--no-shaping", action="store_true",
                   help="use --bandwidth only to choose the cut, do not pace the uplink (real links)")
    p.add_argument("--rtt", type=non_negative_ms, default=0.0, help="round-trip time in ms, added "
                   "to every request when shaping (default 0)")
    p.add_argument("--partition", type=int, metavar="K", help="force the cut: the edge runs units 1..K "
                   "(DAG models: the first K nodes in traced order)")
    p.add_argument("--image", type=Path, help="JPEG/PNG to classify, prepared as MODEL's weights expect "
                   "(default: a fixed random tensor); china.jpg and flower.jpg name scikit-learn's sample "
                   "photos when no such file is in the working directory")
    p.add_argument("--weights", type=weights_arg, metavar="FILE|imagenet",
                   help="state dict FILE for MODEL, or 'imagenet': torchvision's ImageNet weights (alex_net, "
                        "vgg_net, mobile_net, res_net, google_net; downloaded once into torch's cache). Both "
                        "sides must hold the same. Default: efficient_net and fashion_net their real weights, "
                        "the others seeded ones")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=1.0, metavar="F",
                   help="emulate an edge F times slower than this machine (default 1)")
    p.add_argument("--local-cloud", action="store_true",
                   help="start a cloud on 127.0.0.1 (free port) for this run, use it, stop it")
    p.add_argument("--no-fallback", action="store_true",
                   help="exit non-zero instead of running locally when the cloud is unavailable")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line at the end")
    add_timeout_arg(p)
    add_objective_args(p)
    add_codec_args(p)
    return p


def print_report(report: EdgeReport, categories: list[str] | None, out=None) -> None:
    out = out or sys.stdout  # looked up at call time, so redirection (and capsys) works
    p, m = report.predicted_ms, report.measured_ms
    uplink = "not measured" if report.bandwidth_mbps is None else f"{report.bandwidth_mbps:g} Mbit/s"
    print(f"model {report.model}: cut after unit {report.cut_point} of {report.num_units} "
          f"({report.cut_layer}); uplink {uplink}, RTT {report.rtt_ms:g} ms", file=out)
    if report.fallback:
        print(f"FALLBACK: {report.fallback_reason}; the edge finished the inference itself", file=out)
    print(f"{'':<10} {'edge':>9} {'transfer':>9} {'cloud':>9} {'total':>9}   ms", file=out)
    print(f"{'predicted':<10} {p.edge:>9.2f} {p.transfer:>9.2f} {p.cloud:>9.2f} {p.total:>9.2f}", file=out)
    print(f"{'measured':<10} {m.edge:>9.2f} {m.transfer:>9.2f} {m.cloud:>9.2f} {m.total:>9.2f}"
          f"   (overhead {report.overhead_ms:.2f})", file=out)
    if report.energy_mj is not None:
        e = report.energy_mj
        print(f"edge energy (modelled, not measured): predicted {e['predicted']:.1f} mJ, "
              f"from the measured times {e['from_measured_times']:.1f} mJ; cut chosen for "
              f"{report.objective}", file=out)
    if report.codec != "none" or report.encode_ms or report.decode_ms:
        print(f"codec {report.codec}{' (lossy)' if report.lossy else ' (exact)'}: {report.coded_bytes} coded bytes, "
              f"encode {report.encode_ms:.2f} ms on the edge, decode {report.decode_ms:.2f} ms on the cloud", file=out)
    print(f"sent {report.transfer_bytes} bytes; top-5:", file=out)
    for index, score in report.top5:
        name = f"  {categories[index]}" if categories else ""
        print(f"  class {index:>4}  p={score:.4f}{name}", file=out)


def main(argv=None, description: str = "") -> int:
    parser = build_parser(description)
    args = parser.parse_args(argv)
    args.objective = objective_from_args(args, parser)
    try:
        device = resolve_device(args.device)
        source = (ImageSource.from_path(resolve_image_path(args.image), preprocessing(args.model, args.weights))
                  if args.image else None)
        x = source.tensor() if source is not None else model_input(args.model, args.weights)
    except (DeviceError, ImageError) as e:
        parser.exit(2, f"error: {e}\n")
    if isinstance(args.weights, Path) and not args.weights.is_file():
        parser.exit(2, f"error: weights file not found: {args.weights}\n")
    torch.set_num_threads(DEFAULT_THREADS["edge"])
    try:
        model = get_model(args.model, args.weights, device)
    except WeightsUnavailable as e:
        parser.exit(2, f"error: {e}\n")
    except WEIGHTS_ERRORS as e:
        parser.exit(2, f"error: {weights_error_line(e, args.weights, args.model)}\n")
    if args.partition is not None and not 0 <= args.partition <= model.num_units:
        parser.exit(2, f"error: --partition {args.partition} is outside 0..{model.num_units} for {args.model}\n")
    check_codec_args(args, parser, model.num_units)
    args.source = source if device.type == "cpu" else None  # image codecs decode on the CPU
    x = x.to(device)
    if args.bandwidth == SPEEDTEST:
        try:
            args.bandwidth = speedtest_uplink_mbps()
        except SpeedtestUnavailable as e:
            parser.exit(2, f"error: {e}\n")
        args.no_shaping = True  # a measured real link is used to decide, not emulated
        print(f"speedtest uplink: {args.bandwidth:.2f} Mbit/s", flush=True)
    model.warm_up(device)  # a deployed edge keeps its model loaded: time a warm one, not a cold start

    if args.local_cloud:
        try:
            local_cloud = LocalCloud([args.model], {args.model: args.weights} if args.weights else None,
                                     device.type, token=auth.token_from(args.token))
        except CloudUnavailable as e:
            parser.exit(1, f"error: {e}\n")
        with local_cloud:
            return _run(args, model, x, *local_cloud.address)
    return _run(args, model, x, args.ip, args.port)


def _run(args, model, x, host: str, port: int) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
        warn_if_other_machine(edge)
    planner = planner_for(model, edge, cloud, args.edge_slowdown)
    shaping = args.bandwidth is not None and not args.no_shaping
    pacer = LinkPacer(args.bandwidth) if shaping else None
    client: CloudClient | None  # None once the cloud is found unavailable
    client = CloudClient(host, port, pacer=pacer, rtt_ms=args.rtt if shaping else 0.0,
                         token=auth.token_from(args.token), weights=(model.name, model.fingerprint),
                         timeout_s=args.timeout, expected_mbps=args.bandwidth,
                         num_classes={model.name: model.num_classes})
    client.notify = lambda text: print(text, file=sys.stderr, flush=True)
    bandwidth_mbps = args.bandwidth
    unavailable = None
    if args.partition == model.num_units:  # all on the edge: no connection, no probe
        report = _infer(args, model, planner, x, None, bandwidth_mbps, None)
        return _print(args, model, report)
    try:
        client.connect()
        if bandwidth_mbps is None:
            bandwidth_mbps = measure_bandwidth_mbps(client)
            print(f"measured uplink to {client.where}: {bandwidth_mbps:.2f} Mbit/s", flush=True)
            client.expected_mbps = bandwidth_mbps
    except CloudUnavailable as e:
        if args.no_fallback:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"{e}; running the whole model on the edge", file=sys.stderr)
        client, unavailable = None, str(e)
    except CloudRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        report = _infer(args, model, planner, x, client, bandwidth_mbps, unavailable)
    except CloudRefused as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if client is not None:
            client.close()
    if report.fallback and args.no_fallback:
        print(f"error: {report.fallback_reason}", file=sys.stderr)
        return 1
    return _print(args, model, report)


def _infer(args, model, planner, x, client, bandwidth_mbps, unavailable) -> EdgeReport:
    link = None if bandwidth_mbps is None else Link(bandwidth_mbps, args.rtt)
    partition = None if args.partition is None else model.prefix(args.partition)
    configure_codecs(planner, args, args.source, client is not None and client.same_image_decoder)
    return collaborative_inference(model, planner, x, client, link, args.objective, partition,
                                   args.edge_slowdown, unavailable=unavailable, source=args.source)


def _print(args, model, report: EdgeReport) -> int:
    names = categories(args.model, args.weights)  # real weights: class names; seeded: None
    print_report(report, names if names and len(names) == model.num_classes else None)
    if args.json:
        print(json.dumps(report.to_json_dict()))
    return 0
