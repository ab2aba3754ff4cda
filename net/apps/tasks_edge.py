"""tasks_edge_api.py's body: a queue of inference tasks, the uplink re-measured on a schedule."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

import torch
from apscheduler.schedulers.background import BackgroundScheduler

from models import ALL_MODEL_NAMES, WeightsUnavailable, model_input
from models.weights import weights_file
from net.apps.cli import (
    add_codec_args,
    add_connection_args,
    add_objective_args,
    add_timeout_arg,
    bandwidth_arg,
    check_codec_args,
    model_weights_arg,
    non_negative_ms,
    objective_from_args,
    port_arg,
    slowdown_arg,
)
from net.cloud.local import LocalCloud
from net.cloud.monitor import monitor_port_for
from net.cloud.server import DEFAULT_HOST, DEFAULT_PORT
from net.edge.client import CloudClient, CloudRefused, CloudUnavailable
from net.edge.tasks import (
    DEFAULT_INTERVAL_S,
    DEFAULT_NUM_TASKS,
    BandwidthTracker,
    TaskRunner,
    draw_tasks,
    print_summary,
    replay_trace,
    summarize,
)
from net.emulation.link import LinkPacer
from net.emulation.trace import TraceError, load_trace
from net.wire import auth
from net.wire.codecs import ImageSource
from predictor import LatencyPredictor
from predictor.deploy import DEFAULT_THREADS, warn_if_other_machine
from utils.device import DeviceError, resolve_device
from utils.errors import WEIGHTS_ERRORS, weights_error_line
from utils.image import ImageError, resolve_image_path
from utils.provenance import provenance


def task_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in ALL_MODEL_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"unknown model(s) {', '.join(unknown) or '(none given)'}; "
                                          f"valid: {', '.join(ALL_MODEL_NAMES)}")
    return names


def build_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_args(p, DEFAULT_HOST, DEFAULT_PORT)
    p.add_argument("--token", help=f"shared token the cloud requires (default: ${auth.TOKEN_ENV} if set)")
    p.add_argument("--monitor-port", type=port_arg, help="bandwidth monitor port (default: PORT + 1)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--num-tasks", type=int, default=DEFAULT_NUM_TASKS,
                       help=f"tasks drawn at random over the models (default {DEFAULT_NUM_TASKS})")
    which.add_argument("--tasks", type=task_list, help="an explicit list, e.g. alex_net,vgg_net,le_net")
    p.add_argument("--seed", type=int, help="seed of the random draw (reproducible task lists)")
    p.add_argument("--interval", type=float, default=DEFAULT_INTERVAL_S,
                   help=f"seconds between uplink measurements (default {DEFAULT_INTERVAL_S:g})")
    link = p.add_mutually_exclusive_group()
    link.add_argument("--bandwidth", type=bandwidth_arg, metavar="MBPS|3g|lte|wifi",
                      help="emulate an uplink of this rate (the monitor measures the paced link)")
    link.add_argument("--bandwidth-trace", type=Path, metavar="FILE.csv",
                      help="replay a changing uplink: CSV time_s,bandwidth_mbps (see traces/)")
    p.add_argument("--no-shaping", action="store_true",
                   help="with --bandwidth: decide with that figure, do not pace or measure (real links)")
    p.add_argument("--rtt", type=non_negative_ms, default=0.0, help="round-trip time in ms (default 0)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=1.0, metavar="F",
                   help="emulate an edge F times slower than this machine")
    p.add_argument("--image", type=Path, help="JPEG/PNG every task classifies, prepared as each model's "
                   "weights expect (default: a fixed tensor); china.jpg and flower.jpg name scikit-learn's "
                   "sample photos when no such file is in the working directory")
    p.add_argument("--weights", type=model_weights_arg, action="append", default=[], metavar="MODEL=FILE|imagenet",
                   help="state dict FILE for MODEL, or MODEL=imagenet: torchvision's ImageNet weights "
                        "(repeatable); the cloud must hold the same")
    p.add_argument("--local-cloud", action="store_true",
                   help="start tasks_cloud_api.py on free loopback ports for this run")
    p.add_argument("--report", type=Path, metavar="PATH",
                   help="write PATH.xls, PATH.csv (one row per task; provenance in "
                        "PATH.provenance.json) and PATH.png; a given .csv/.xls/.png suffix is dropped")
    add_timeout_arg(p)
    add_objective_args(p)
    add_codec_args(p)
    return p


def main(argv=None, description: str = "") -> int:
    parser = build_parser(description)
    args = parser.parse_args(argv)
    if args.num_tasks < 1:
        parser.error("--num-tasks must be at least 1")
    if args.interval <= 0:
        parser.error("--interval must be > 0 s")
    if args.no_shaping and args.bandwidth is None:
        parser.error("--no-shaping goes with --bandwidth (a trace is always replayed on the emulated link)")
    args.objective = objective_from_args(args, parser)
    check_codec_args(args, parser)
    try:
        device = resolve_device(args.device)
        source = ImageSource.from_path(resolve_image_path(args.image)) if args.image else None
        args.source = source if device.type == "cpu" else None  # image codecs decode on the CPU
        trace = load_trace(args.bandwidth_trace) if args.bandwidth_trace else None
    except (DeviceError, TraceError) as e:
        parser.exit(2, f"error: {e}\n")
    for name, spec in args.weights:
        try:
            weights_file(name, spec)
        except WeightsUnavailable as e:
            parser.exit(2, f"error: {e}\n")
    tasks = args.tasks or draw_tasks(args.num_tasks, args.seed)
    weights = dict(args.weights)
    try:  # each model's input: its own shape, the image prepared as its weights expect
        x = {name: model_input(name, weights.get(name), args.image).to(device) for name in set(tasks)}
    except ImageError as e:
        parser.exit(2, f"error: {e}\n")
    print(f"{len(tasks)} tasks: {', '.join(tasks)}", flush=True)
    torch.set_num_threads(DEFAULT_THREADS["edge"])

    if args.local_cloud:
        try:
            cloud = LocalCloud(sorted(set(tasks)), dict(args.weights), device.type, with_monitor=True,
                               token=auth.token_from(args.token))
        except CloudUnavailable as e:
            parser.exit(1, f"error: {e}\n")
        with cloud:
            return _run(args, tasks, x, cloud.address, cloud.monitor_address, trace)
    monitor_port = args.monitor_port if args.monitor_port is not None else monitor_port_for(args.port)
    return _run(args, tasks, x, (args.ip, args.port), (args.ip, monitor_port), trace)


def _run(args, tasks, x, cloud_address, monitor_address, trace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
        warn_if_other_machine(edge)
    fixed_mbps = args.bandwidth if args.no_shaping else None
    shaped_mbps = trace[0].bandwidth_mbps if trace else (None if args.no_shaping else args.bandwidth)
    pacer = LinkPacer(shaped_mbps) if shaped_mbps else None
    rtt_ms = args.rtt
    token = auth.token_from(args.token)
    host, port = cloud_address
    client = CloudClient(host, port, pacer=pacer, rtt_ms=rtt_ms if pacer else 0.0, token=token,
                         timeout_s=args.timeout)
    runner = TaskRunner(client, edge, cloud, x, rtt_ms, args.edge_slowdown, dict(args.weights), args.objective,
                        source=args.source, codec=args.codec, accuracy_budget=args.accuracy_budget)
    for name, path in args.weights:  # a weights file that does not load: one line, before any task
        try:
            runner.model(name)
        except WEIGHTS_ERRORS as e:
            print(f"error: {weights_error_line(e, path, name)}", file=sys.stderr)
            return 2
    scheduler = BackgroundScheduler()
    started_wall, started = time.time(), time.monotonic()
    tracker = None
    if trace:
        assert pacer is not None  # shaped at the trace's first bandwidth, which is > 0
        replay_trace(scheduler, pacer, trace, started_wall)
    if fixed_mbps is None:
        tracker = BandwidthTracker(scheduler, [monitor_address, cloud_address], pacer,
                                   rtt_ms if pacer else 0.0, args.interval, token, timeout_s=args.timeout)
    scheduler.start()
    rows, status = [], 0
    if tracker is not None and tracker.latest_mbps is None and tracker.refused:
        print(f"error: {tracker.refused}", file=sys.stderr)
        scheduler.shutdown(wait=True)
        tracker.close()
        return 1
    interrupted = threading.Event()
    previous_handler = signal.signal(signal.SIGINT, lambda signum, frame: on_ctrl_c(interrupted))
    previous_unraisable_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: (None if issubclass(unraisable.exc_type, KeyboardInterrupt)
                                             else previous_unraisable_hook(unraisable))
    try:
        for i, name in enumerate(tasks, start=1):
            if interrupted.is_set():
                raise KeyboardInterrupt
            bandwidth = fixed_mbps if tracker is None else tracker.latest_mbps
            client.expected_mbps = bandwidth  # the reply's deadline allows the upload at this rate
            if tracker is not None:  # the monitor's probes also bring the cloud's load: use the newest
                tracker.share_load(client)
            row = runner.run_task(i, name, bandwidth, started)
            rows.append(row)
            flag = "  FALLBACK: " + row["fallback_reason"] if row["fallback"] else ""
            bw = "-" if row["bandwidth_mbps"] is None else f"{row['bandwidth_mbps']:.2f}"
            print(f"task {i:>3}/{len(tasks)} {name:<10} {bw:>8} Mbit/s  cut {row['cut_point']:>2}/"
                  f"{row['num_units']:<2}  predicted {row['predicted_total_ms']:8.1f} ms  "
                  f"measured {row['measured_total_ms']:8.1f} ms{flag}", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {len(rows)} of {len(tasks)} tasks", file=sys.stderr)
        status = 130  # the shell's convention for a run ended by Ctrl-C (128 + SIGINT)
    except CloudRefused as e:  # a mistake to fix (weights, token), not a network fault
        print(f"error: {e}; stopped after {len(rows)} of {len(tasks)} tasks", file=sys.stderr)
        status = 1
    finally:
        signal.signal(signal.SIGINT, previous_handler)
        sys.unraisablehook = previous_unraisable_hook
        scheduler.shutdown(wait=True)  # a measurement in flight finishes before its client closes
        if tracker is not None:
            tracker.close()
        client.close()
    summary = summarize(rows) if rows else []
    print_summary(summary, sys.stdout)
    if args.report and rows:
        write_reports(args.report, rows, summary, args)
    return status


def on_ctrl_c(interrupted: threading.Event) -> None:
    """Ctrl-C during the tasks: raise at once, as Python's own handler does, and leave a flag.

    A KeyboardInterrupt raised while Python runs a __del__ or a GC callback is "ignored" (printed
    and swallowed) and the run would go on: the flag stops the loop at the next task instead, and
    the unraisable hook installed beside this handler keeps that swallowed one off stderr.
    """
    interrupted.set()
    raise KeyboardInterrupt


def report_base(path: Path) -> Path:
    """--report run and --report run.csv both mean run.csv, run.xls, run.png (not run.csv.csv)."""
    return path.with_suffix("") if path.suffix.lower() in (".csv", ".xls", ".png") else path


def write_reports(path: Path, rows: list[dict], summary: list[dict], args) -> None:
    from utils.excel_utils import write_csv, write_sheet
    from utils.plots import plot_task_report

    meta = provenance(edge_threads=DEFAULT_THREADS["edge"], edge_slowdown=args.edge_slowdown, rtt_ms=args.rtt,
                      seed=args.seed, trace=str(args.bandwidth_trace or ""))
    header = list(rows[0])
    path = report_base(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    xls, csv_path, png = (path.with_name(path.name + ext) for ext in (".xls", ".csv", ".png"))
    write_sheet(xls, header, rows, sheet_name="tasks", provenance=meta)
    write_csv(csv_path, header, rows, provenance=meta)
    plot_task_report(rows, png, ALL_MODEL_NAMES)
    print(f"wrote {xls}, {csv_path}, {png}")
