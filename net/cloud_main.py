"""cloud_api.py's body: parse the flags, start the cloud server, serve until Ctrl-C / SIGTERM."""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import torch

from models import MODEL_NAMES
from net.cloud_server import DEFAULT_HOST, DEFAULT_PORT, CloudServer
from net.protocol import DEFAULT_MAX_FRAME_BYTES
from utils.cli import add_connection_args, model_weights_arg
from utils.device import DeviceError, resolve_device


def build_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_connection_args(p, DEFAULT_HOST, DEFAULT_PORT)
    p.add_argument("--weights", type=model_weights_arg, action="append", default=[], metavar="MODEL=FILE",
                   help="torchvision state dict for MODEL (repeatable); default: seeded weights")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all cores)")
    p.add_argument("--max-frame-mb", type=float, default=DEFAULT_MAX_FRAME_BYTES / 2**20,
                   help="largest request accepted, MiB (default 64)")
    p.add_argument("--preload", nargs="+", choices=MODEL_NAMES, default=[], metavar="MODEL",
                   help="build these models before serving (default: each on its first request)")
    p.add_argument("-v", "--verbose", action="store_true", help="log every refused request")
    return p


def start_cloud(args) -> CloudServer:
    """The cloud server described by `args`, serving in the background. Raises SystemExit with
    one clear line when the device or the address cannot be used."""
    try:
        device = resolve_device(args.device)
    except DeviceError as e:
        raise SystemExit(f"error: {e}")
    for name, path in args.weights:
        if not path.is_file():
            raise SystemExit(f"error: weights file for {name} not found: {path}")
    torch.set_num_threads(max(1, args.threads))
    try:
        server = CloudServer(args.ip, args.port, device=device.type, weights=dict(args.weights),
                             max_frame_bytes=int(args.max_frame_mb * 2**20))
    except OSError as e:
        raise SystemExit(f"error: cannot listen on {args.ip}:{args.port}: {e.strerror or e}")
    for name in args.preload:
        server.models.get(name)
    return server.start()


def serve_until_signal(servers: list) -> None:
    """Block until Ctrl-C or SIGTERM, then stop every server."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    for server in servers:
        server.stop()


def main(argv=None, description: str = "") -> int:
    args = build_parser(description).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s: %(message)s")
    server = start_cloud(args)
    host, port = server.address
    print(f"cloud serving on {host}:{port} ({args.device}, {torch.get_num_threads()} thread(s)); "
          "Ctrl-C to stop", flush=True)
    serve_until_signal([server])
    print("cloud stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
