"""cloud_api.py's and tasks_cloud_api.py's body: parse the flags, start the cloud server (and the
bandwidth monitor), serve until Ctrl-C / SIGTERM."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

import torch

from models import ALL_MODEL_NAMES, MODEL_NAMES, WeightsUnavailable
from models.weights import weights_file
from net.apps.cli import add_connection_args, model_weights_arg, port_arg
from net.cloud.monitor import MonitorServer, monitor_port_for
from net.cloud.server import DEFAULT_HOST, DEFAULT_PORT, CloudServer
from net.server.framework import DEFAULT_IDLE_TIMEOUT_S, DEFAULT_MAX_CONNECTIONS, FrameServer
from net.wire import auth
from net.wire.protocol import DEFAULT_MAX_FRAME_BYTES, HEADER_TIMEOUT_S, MIN_RATE_BPS
from utils.device import DeviceError, resolve_device
from utils.errors import weights_error_line

READY_PREFIX = "ready "  # then a JSON object: the line a parent process waits for


def build_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_args(p, DEFAULT_HOST, DEFAULT_PORT)
    p.add_argument("--weights", type=model_weights_arg, action="append", default=[], metavar="MODEL=FILE|imagenet",
                   help="state dict FILE for MODEL, or MODEL=imagenet: torchvision's ImageNet weights through "
                        "torch's cache (repeatable); default: efficient_net and fashion_net their real "
                        "weights, the others seeded ones")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    p.add_argument("--max-frame-mb", type=float, default=DEFAULT_MAX_FRAME_BYTES / 2**20,
                   help="largest request accepted, MiB (default 64)")
    p.add_argument("--preload", nargs="+", choices=ALL_MODEL_NAMES, default=[], metavar="MODEL",
                   help="build these models before serving (default: each on its first request)")
    p.add_argument("--token", help=f"require edges to prove this shared token (HMAC; default: "
                   f"${auth.TOKEN_ENV} if set); frames are then authenticated, not encrypted")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS,
                   help=f"connections served at once; more are refused as busy (default {DEFAULT_MAX_CONNECTIONS})")
    p.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT_S, metavar="S",
                   help=f"close a connection idle this long between requests (default {DEFAULT_IDLE_TIMEOUT_S:g} s)")
    p.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT_S, metavar="S",
                   help=f"a started frame's header must arrive within this (default {HEADER_TIMEOUT_S:g} s)")
    p.add_argument("--min-rate-kbps", type=float, default=MIN_RATE_BPS * 8 / 1e3, metavar="KBIT/S",
                   help=f"slowest accepted upload, kbit/s (default {MIN_RATE_BPS * 8 / 1e3:g}, far below 3G)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every refused request")
    # for a parent process that starts this cloud (net.cloud.local): one JSON line once it serves
    p.add_argument("--ready-line", action="store_true", help=argparse.SUPPRESS)
    return p


def server_limits(args) -> dict:
    """The keyword arguments every FrameServer takes from the command line."""
    for name in ("idle_timeout", "header_timeout", "min_rate_kbps", "max_connections", "max_frame_mb"):
        if not getattr(args, name) > 0:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be > 0")
    return {"max_frame_bytes": int(args.max_frame_mb * 2**20), "token": args.token_bytes,
            "max_connections": args.max_connections, "idle_timeout_s": args.idle_timeout,
            "header_timeout_s": args.header_timeout, "min_rate_bps": args.min_rate_kbps * 1e3 / 8}


def start_cloud(args) -> CloudServer:
    """The cloud server described by `args`, serving in the background. Raises SystemExit with
    one clear line when the device or the address cannot be used."""
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        raise SystemExit(f"error: {e}") from None
    for name, spec in args.weights:  # a missing file, or ImageNet weights not to be had: one line, now
        try:
            weights_file(name, spec)
        except WeightsUnavailable as e:
            raise SystemExit(f"error: {e}") from None
    torch.set_num_threads(max(1, args.threads))
    try:
        server = CloudServer(args.ip, args.port, device=device.type, weights=dict(args.weights),
                             **server_limits(args))
    except (OSError, OverflowError) as e:
        raise SystemExit(f"error: cannot listen on {args.ip}:{args.port}: {getattr(e, 'strerror', None) or e}") from None
    # A model with a weights file is built now, like --preload: a file that does not load stops the
    # start, rather than a cloud that says it serves and then fails every request for that model.
    weights = dict(args.weights)
    for name in dict.fromkeys([*args.preload, *weights]):
        try:
            server.models.get(name)
        except Exception as e:  # one line, not a traceback
            server.server_close()
            if name in weights:
                raise SystemExit(f"error: {weights_error_line(e, weights[name], name)}") from None
            raise SystemExit(f"error: cannot build {name}: {type(e).__name__}: {str(e).splitlines()[0]}") from None
    return server.start()


def serve_until_signal(servers: list) -> None:
    """Block until Ctrl-C or SIGTERM, then stop every server."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()


def main(argv=None, description: str = "", with_monitor: bool = False) -> int:
    """cloud_api.py; with_monitor: tasks_cloud_api.py, which also runs the bandwidth monitor."""
    parser = build_parser(description)
    if with_monitor:
        parser.add_argument("--monitor-port", type=port_arg, default=None,
                            help="port of the bandwidth monitor server (default: PORT + 1)")
    args = parser.parse_args(argv)
    if with_monitor and not args.preload:
        # multi-task mode times every task: a model built on its first request would count the
        # build (seconds for VGG16-BN) as that task's transfer time, so build them all first
        args.preload = list(MODEL_NAMES)
        print(f"building {', '.join(args.preload)} before serving (--preload MODEL ... to choose)",
              file=sys.stderr, flush=True)
    args.token_bytes = auth.token_from(args.token)
    if args.token_bytes is None and args.ip not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {args.ip} without a token: anyone who can reach this port can "
              f"use this cloud; set --token or {auth.TOKEN_ENV} on both sides", file=sys.stderr, flush=True)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    server = start_cloud(args)
    host, port = server.address
    servers: list[FrameServer] = [server]
    print(f"cloud serving on {host}:{port} ({args.device}, {torch.get_num_threads()} thread(s)); "
          "Ctrl-C to stop", flush=True)
    if with_monitor:
        monitor_port = args.monitor_port if args.monitor_port is not None else monitor_port_for(args.port)
        try:
            monitor = MonitorServer(args.ip, monitor_port, **server_limits(args))
            monitor.load = server.load  # one process: the monitor reports the cloud's load
            monitor.start()
        except (OSError, OverflowError) as e:
            server.stop()
            raise SystemExit(f"error: cannot listen on {args.ip}:{monitor_port} for the monitor: "
                             f"{getattr(e, 'strerror', None) or e}") from None
        servers.append(monitor)
        print(f"bandwidth monitor on {monitor.address[0]}:{monitor.address[1]}", flush=True)
    if args.ready_line:
        ready = {"address": [host, port], "threads": torch.get_num_threads(),
                 "monitor": list(servers[1].address) if with_monitor else None}
        print(READY_PREFIX + json.dumps(ready), flush=True)
    serve_until_signal(servers)
    print("cloud stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
