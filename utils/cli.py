"""Argument types and options shared by the command-line scripts."""
from __future__ import annotations

import argparse
from pathlib import Path

from models import ALL_MODEL_NAMES
from net.link import parse_bandwidth
from utils.device import DEVICES


def bandwidth_arg(text: str) -> float:
    try:
        return parse_bandwidth(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def non_negative_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number of ms >= 0, got {text!r}")
    return value


def slowdown_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value >= 1:
        raise argparse.ArgumentTypeError(f"the edge slowdown is a factor >= 1, got {text!r}")
    return value


def model_weights_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or name not in ALL_MODEL_NAMES or not path:
        raise argparse.ArgumentTypeError(f"expected MODEL=FILE with MODEL one of {', '.join(ALL_MODEL_NAMES)}, got {text!r}")
    return name, Path(path)


def port_arg(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535 (0: any free port), got {text!r}")
    return port


def add_connection_args(p: argparse.ArgumentParser, default_host: str, default_port: int) -> None:
    """The original design's short flags: -i IP -p PORT -d cpu|cuda."""
    p.add_argument("-i", "--ip", default=default_host, help=f"cloud address (default {default_host})")
    p.add_argument("-p", "--port", type=port_arg, default=default_port, help=f"cloud port (default {default_port})")
    p.add_argument("-d", "--device", default="cpu", choices=DEVICES, help="cpu or cuda (default cpu)")
