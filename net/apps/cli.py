"""Argument types and options shared by the command-line scripts."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from models import ALL_MODEL_NAMES
from net.edge.client import DEFAULT_TIMEOUT_S
from net.emulation.link import NETWORK_PRESETS_MBPS, parse_bandwidth
from net.wire.codecs import ALL_CODECS, is_input_codec
from predictor.energy import OBJECTIVES, EdgePower, PowerProfile, PowerProfileError
from predictor.planner import Objective
from utils.device import DEVICES


class BandwidthMbps(float):
    """Mbit/s that remembers the preset it was named by ("3g", "lte", "wifi"), if any: the
    network whose radio powers the energy model uses unless --network says otherwise."""
    network: str | None = None


def bandwidth_arg(text: str) -> BandwidthMbps:
    try:
        value = BandwidthMbps(parse_bandwidth(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    key = str(text).strip().lower()
    value.network = key if key in NETWORK_PRESETS_MBPS else None
    return value


def add_objective_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objective", choices=OBJECTIVES, default="latency",
                   help="choose the cut for the least latency (default) or the least edge energy (modelled)")
    p.add_argument("--network", metavar="3g|lte|wifi", help="the radio the edge sends over, for the "
                   "energy model (default: the --bandwidth preset's name)")
    p.add_argument("--power-profile", type=Path, metavar="FILE.json", help="your device's power "
                   "figures, laid over predictor/power/default.json (same layout)")


def objective_from_args(args: argparse.Namespace, p: argparse.ArgumentParser) -> Objective:
    """--objective with the edge's powers (when its network is known): built once, checked once."""
    return Objective(args.objective, edge_power_from_args(args, p))


def edge_power_from_args(args: argparse.Namespace, p: argparse.ArgumentParser) -> EdgePower | None:
    """The edge's powers for the energy model, or None when the network is unknown (then only
    latency is reported). Exits with a one-line message on a bad profile or network."""
    network = args.network or getattr(args.bandwidth, "network", None)
    if network is None:
        if args.objective == "energy":
            p.error("--objective energy needs the network whose radio sends: --network 3g|lte|wifi "
                    "(or a --bandwidth preset)")
        if args.power_profile is None:
            return None
        p.error("--power-profile needs the network whose radio sends: --network 3g|lte|wifi (or a --bandwidth preset)")
    try:
        return PowerProfile.load(args.power_profile).for_network(network)
    except PowerProfileError as e:
        p.error(str(e))


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


IMAGENET = "imagenet"  # the spelling of torchvision's ImageNet weights on the command line


def weights_arg(text: str) -> str | Path:
    """--weights: 'imagenet' (torchvision's, through torch's cache) or a state dict FILE."""
    return IMAGENET if text.strip().lower() == IMAGENET else Path(text)


def model_weights_arg(text: str) -> tuple[str, str | Path]:
    name, sep, path = text.partition("=")
    if not sep or name not in ALL_MODEL_NAMES or not path:
        raise argparse.ArgumentTypeError(f"expected MODEL=FILE or MODEL=imagenet with MODEL one of "
                                         f"{', '.join(ALL_MODEL_NAMES)}, got {text!r}")
    return name, weights_arg(path)


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


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0 (--timeout)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_timeout_arg(p: argparse.ArgumentParser) -> None:
    """The edge's patience with the cloud (edge_api.py and tasks_edge_api.py)."""
    p.add_argument("--timeout", type=positive_seconds, default=DEFAULT_TIMEOUT_S, metavar="S",
                   help=f"how long the cloud may take to answer a request, beyond the expected upload "
                        f"time at the uplink's rate (default {DEFAULT_TIMEOUT_S:g} s; the handshake gets S "
                        "in all); then the request is sent once more, then the edge finishes it itself")


def budget_points(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"the accuracy budget is a number of top-1 points >= 0, got {text!r}")
    return value


def add_codec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--codec", default="auto", choices=("auto", *ALL_CODECS), metavar="auto|none|NAME",
                   help="how the crossing tensor (at cut 0: maybe the image) is coded: auto (default) lets "
                        "the planner choose among the exact codecs; none sends float32; or one of "
                        f"{', '.join(ALL_CODECS[1:])} (always obeyed; lossy ones reported as lossy)")
    p.add_argument("--accuracy-budget", type=budget_points, default=0.0, metavar="POINTS",
                   help="top-1 points auto may lose to lossy codecs (default 0: exact codecs only, answers "
                        "equal to local inference)")


def check_codec_args(args: argparse.Namespace, p: argparse.ArgumentParser, num_units: int | None = None) -> None:
    """One line for a codec that cannot be obeyed: an input codec needs --image and cut 0."""
    if is_input_codec(args.codec):
        if getattr(args, "image", None) is None:
            p.error(f"--codec {args.codec} codes the input image: give --image")
        partition = getattr(args, "partition", None)
        if partition is not None and partition != 0 and partition != num_units:
            p.error(f"--codec {args.codec} codes the input image: it goes with --partition 0, not {partition}")


def configure_codecs(planner, args: argparse.Namespace, source, same_image_decoder: bool = True) -> None:
    """Tell the planner which codecs it may use (--codec, --accuracy-budget) and the image in hand."""
    image_codecs = source.input_codecs(tuple(planner.model.input_shape)) if source is not None else ()
    if is_input_codec(args.codec) and args.codec not in image_codecs:
        raise SystemExit(f"error: --codec {args.codec}: {planner.model.name} takes its image only as "
                         f"{' or '.join(image_codecs) or 'a tensor (no input codec)'}")
    planner.use_codecs(args.codec, args.accuracy_budget, source, same_image_decoder)
    if args.codec == "auto" and args.accuracy_budget > 0 and not planner.codecs.accuracy:
        print(f"note: no accuracy table of the lossy codecs for {planner.model.name} on these weights "
              "(predictor/codec_accuracy.py): auto uses exact codecs only", file=sys.stderr, flush=True)
