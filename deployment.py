"""Profile this device's layers and refit the latency predictors, or show the table of cuts.

  python deployment.py --role edge|cloud [--threads N] [--quick] [--overwrite-shipped]
  python deployment.py -t MODEL --bandwidth MBPS|3g|lte|wifi [--rtt MS] --show [--json] [--plot FILE.png]
                       [--objective latency|energy] [--network 3g|lte|wifi] [--power-profile FILE.json]
"""
import argparse
import json
import sys

from models import ALL_MODEL_NAMES, DAG_MODEL_NAMES, get_dnn_model
from models.dag import get_dag_model
from predictor import LatencyPredictor, Planner
from predictor.dag_plan import DagPlanner
from predictor.deploy import (cut_table_document, dag_partition_document, dag_prefix_document, format_dag_partition,
                              print_cut_table, profile_and_fit, warn_if_other_machine)
from predictor.regression import ROLES
from utils.cli import add_objective_args, bandwidth_arg, edge_power_from_args, non_negative_ms, slowdown_arg


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
    power = edge_power_from_args(args, p)
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    for predictor in (edge, cloud):
        warn_if_other_machine(predictor)
    if args.model in DAG_MODEL_NAMES:
        planner = DagPlanner(get_dag_model(args.model), edge, cloud, args.edge_slowdown)
        if args.plot:  # before the JSON, which stays the last line of stdout
            write_plot(p, *dag_prefix_document(planner, args.bandwidth, args.rtt, args.objective, power), args.plot)
        document = dag_partition_document(planner, args.bandwidth, args.rtt, args.objective, power)
        if args.json:
            print(json.dumps(document))
        elif args.show or not args.plot:
            print(format_dag_partition(document))
        return 0
    planner = Planner.for_model(get_dnn_model(args.model), edge, cloud, args.edge_slowdown)
    document = cut_table_document(planner, args.bandwidth, args.rtt, args.objective, power)
    if args.plot:  # before the JSON, which stays the last line of stdout
        from utils.plots import unit_rows
        write_plot(p, document, unit_rows(planner), args.plot)
    if args.json:
        print(json.dumps(document))
    elif args.show or not args.plot:
        print_cut_table(document)
    return 0


def write_plot(p: argparse.ArgumentParser, document: dict, units: list[dict], path: str) -> None:
    from utils.plots import plot_cut_table  # matplotlib only when asked for
    try:
        print(f"wrote {plot_cut_table(document, units, path)}")
    except OSError as e:
        p.error(f"cannot write the plot: {e}")


if __name__ == "__main__":
    sys.exit(main())
