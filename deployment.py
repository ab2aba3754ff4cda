"""Profile this device's layers and refit the latency predictors, or show the table of cuts.

  python deployment.py --role edge|cloud [--threads N] [--quick] [--overwrite-shipped]
  python deployment.py -t MODEL --bandwidth MBPS|3g|lte|wifi [--rtt MS] --show [--json] [--plot FILE.png]
                       [--objective latency|energy] [--network 3g|lte|wifi] [--power-profile FILE.json]
                       [--codec auto|none|NAME] [--accuracy-budget POINTS]
Profiling (--role) also measures the codecs' costs on this machine (codecs.json beside the predictors).
"""
import argparse
import json
import sys

from models import ALL_MODEL_NAMES, get_model
from net.apps.cli import (
    add_codec_args,
    add_objective_args,
    bandwidth_arg,
    non_negative_ms,
    objective_from_args,
    slowdown_arg,
)
from predictor import LatencyPredictor, Link, planner_for
from predictor.deploy import (
    cut_table_document,
    decision_document,
    format_decision,
    profile_and_fit,
    warn_if_other_machine,
)
from predictor.regression import ROLES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=ROLES, help="profile this machine as the edge or the cloud and refit")
    p.add_argument("--threads", type=int, help="torch threads while profiling (default: edge 1, cloud all cores)")
    p.add_argument("--quick", action="store_true", help="a small profile (under a minute) for CI")
    p.add_argument("--overwrite-shipped", action="store_true",
                   help="write the profile and predictors over the shipped ones in predictor/ (default: "
                        "this machine's own folder, runs/profile or $NEUROSURGEON_PROFILE_DIR, used from "
                        "then on by every script here)")
    p.add_argument("-t", "--model", choices=ALL_MODEL_NAMES, metavar="MODEL",
                   help=f"model to show cuts for: {', '.join(ALL_MODEL_NAMES)}")
    p.add_argument("--bandwidth", type=bandwidth_arg, default=None, help="uplink Mbit/s or 3g|lte|wifi")
    p.add_argument("--rtt", type=non_negative_ms, default=0.0, help="round-trip time in ms (default 0)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=1.0, metavar="F",
                   help="plan for an edge F times slower than the profiled one (default 1)")
    p.add_argument("--show", action="store_true", help="print the predicted cost of every cut")
    p.add_argument("--json", action="store_true", help="print the cut table as one JSON object")
    p.add_argument("--plot", metavar="FILE.png", help="draw per-unit latency and output size, and "
                   "the predicted latency (and modelled energy) of every cut, into a PNG")
    add_objective_args(p)
    add_codec_args(p)
    args = p.parse_args(argv)

    if args.role:
        if args.threads is not None and args.threads < 1:
            p.error("--threads must be at least 1")
        profile_and_fit(args.role, args.threads, args.quick, overwrite_shipped=args.overwrite_shipped)
        return 0
    if not args.model:
        p.error("give --role to profile, or -t MODEL --bandwidth MBPS --show to see the cuts")
    if args.bandwidth is None:
        p.error("--bandwidth is needed to show the cuts")
    objective = objective_from_args(args, p)
    link = Link(args.bandwidth, args.rtt)
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    for predictor in (edge, cloud):
        warn_if_other_machine(predictor)
    planner = planner_for(get_model(args.model), edge, cloud, args.edge_slowdown)
    try:  # no image here: the input codecs are weighed by edge_api.py --image, with the real file
        planner.use_codecs(args.codec, args.accuracy_budget)
    except ValueError:
        p.error(f"--codec {args.codec} codes the input image, which deployment.py does not have: "
                "edge_api.py --image weighs it with the real file")
    if args.plot:  # before the JSON, which stays the last line of stdout
        codec_bytes = {c: [planner.prefix_cost(k, link, objective, c).coded_bytes for k in range(planner.num_units)]
                       for c in ("zstd", "fp16", "int8") if c in planner.codecs.allowed or args.codec == "auto"}
        write_plot(p, cut_table_document(planner, link, objective), planner.unit_rows(), args.plot, codec_bytes)
    document = decision_document(planner, link, objective)
    if args.json:
        print(json.dumps(document))
    elif args.show or not args.plot:
        print(format_decision(document))
    return 0


def write_plot(p: argparse.ArgumentParser, document: dict, units: list[dict], path: str,
               codec_bytes: dict[str, list[int]] | None = None) -> None:
    from utils.plots import plot_cut_table  # matplotlib only when asked for
    try:
        print(f"wrote {plot_cut_table(document, units, path, codec_bytes)}")
    except OSError as e:
        p.error(f"cannot write the plot: {e}")


if __name__ == "__main__":
    sys.exit(main())
