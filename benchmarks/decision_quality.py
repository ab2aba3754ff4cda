"""Decision quality: measured latency of the cut the partition search chooses, against the best
cut found by measuring (the oracle), edge-only and cloud-only. The headline benchmark.

  python -m benchmarks.decision_quality [--models ...] [--bandwidths 3g lte wifi 1 10 100 1000]
                                        [--rtt MS|typical] [--edge-slowdown F] [--repeats R]
                                        [--cloud-threads N] [--seed S] [--out CSV]

Everything goes through real sockets on 127.0.0.1 and the paced link (net.emulation.link.LinkPacer at
each bandwidth, Mbit/s), with --rtt ms paid once per request (default 0; "typical" takes the
paper's networks' typical RTTs, benchmarks.measure.TYPICAL_RTT_MS, and the planner is told the
same RTT). Set-up:
- the cloud is `cloud_api.py -p 0 --threads N --preload MODELS` in a child process; N defaults to
  the thread count the shipped cloud profile was made with (2), and the cloud side is predicted
  with that profile (LatencyPredictor.load("cloud")); with --cloud-threads 1 it is predicted with
  the 1-thread (edge) profile instead. Its threads are pinned (os.sched_setaffinity on each
  thread) to core 1, or to cores 0-1 at 2 threads;
- the edge is this process at 1 torch thread, pinned to core 0, emulating a device F times
  slower (--edge-slowdown, default 10) with collaborative_inference(..., edge_slowdown=F),
  predicted with the edge profile x F.
Each model is warmed up on both sides before anything is timed.

Per model and bandwidth every cut is a candidate, measured as benchmarks.measure says: a
screening pass (not counted; cuts whose paced transfer floor exceeds 1.5x the best total seen
are skipped, and checked afterwards: `skips_exact`), then R interleaved rounds over all kept
cuts in a fresh seeded order each round. The oracle, chosen/oracle with its per-round spread,
the speed-ups and vs_best_endpoint all come from those same runs. Summary: geometric means, the
worst ratio (targets geomean <= 1.05, worst <= 1.25), and the end-to-end prediction bias (median
and range of (predicted - measured) / measured, and per part). Per-cut measurements go to a
second CSV beside --out (NAME_cuts.csv). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from benchmarks.measure import (
    CANDIDATE_COLUMNS,
    COMPARISON_COLUMNS,
    HOST,
    WARMUP_RUNS,
    Candidate,
    CandidateBench,
    compare,
    log,
    pinned_cloud,
    predictors,
    print_summary,
    rtt_arg,
    rtt_for,
    summarize,
    warm_up,
)
from models import MODEL_NAMES, get_dnn_model
from net.apps.cli import bandwidth_arg, slowdown_arg
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.emulation.link import LinkPacer, parse_bandwidth
from predictor import Link
from predictor.planner import ChainPlanner
from utils.image import fixed_input
from utils.provenance import provenance, write_csv_with_provenance

DEFAULT_BANDWIDTHS = ["3g", "lte", "wifi", "1", "10", "100", "1000"]

COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "units", "edge_slowdown", "chosen_cut", "chosen_layer",
           "oracle_cut", "oracle_layer", *COMPARISON_COLUMNS, "measured_cuts", "runs",
           "edge_runq_wait_ms", "cloud_runq_wait_ms", "case_s"]
CUT_COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "cut", "layer", *CANDIDATE_COLUMNS]


def run_case(model, planner: ChainPlanner, x: torch.Tensor, cloud: LocalCloud, label: str, rtt_ms: float,
             repeats: int, edge_slowdown: float, seed: int) -> tuple[dict, list[dict]]:
    t_case = time.perf_counter()
    link = Link(parse_bandwidth(label), rtt_ms)
    n = planner.num_units
    chosen = planner.best(link).cut_point
    candidates = [Candidate(model.prefix(k), "cloud-only" if k == 0 else "edge-only" if k == n else "cut", k)
                  for k in range(n + 1)]
    with CloudClient(HOST, cloud.port, pacer=LinkPacer(link.bandwidth_mbps), rtt_ms=rtt_ms) as client:
        client.connect()
        client.probe(8 * 1024)  # one paced round trip on this connection before timing
        bench = CandidateBench(model, planner, x, client, link, edge_slowdown, cloud.process.pid, candidates)
        measured = bench.measure({0, n, chosen}, repeats, seed,
                                 describe=lambda k: f"cut {k:>2}/{n} (predicted {bench.plans[k].total_ms:9.1f})")
    floors = [bench.floor_ms(k) for k in range(n + 1)]
    cmp = compare(measured, bench.plans, chosen, n, 0, floors, rtt_ms)
    oracle = cmp.pop("oracle")
    row = {"model": model.name, "bandwidth": label, "bandwidth_mbps": link.bandwidth_mbps, "units": n,
           "edge_slowdown": edge_slowdown, "chosen_cut": chosen, "chosen_layer": bench.plans[chosen].label,
           "oracle_cut": oracle, "oracle_layer": bench.plans[oracle].label, **cmp,
           "measured_cuts": ";".join(str(k) for k in sorted(measured.runs)), "runs": bench.runs,
           "edge_runq_wait_ms": round(bench.edge_runq_wait_ms, 1),
           "cloud_runq_wait_ms": round(bench.cloud_runq_wait_ms, 1), "case_s": round(time.perf_counter() - t_case, 1)}
    cut_rows = [{"model": model.name, "bandwidth": label, "bandwidth_mbps": link.bandwidth_mbps, "cut": k,
                 "layer": bench.plans[k].label, **c} for k, c in enumerate(bench.candidate_rows(measured))]
    return row, cut_rows


def print_row(row: dict) -> None:
    print(f"{row['model']:<10} {row['bandwidth']:>5} {row['rtt_ms']:>5g} {row['chosen_cut']:>3}/{row['units']:<3} "
          f"{row['oracle_cut']:>6} {row['chosen_ms']:>10.1f} {row['oracle_ms']:>10.1f} {row['ratio']:>6.3f} "
          f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] {row['speedup_vs_edge']:>7.2f}x "
          f"{row['speedup_vs_cloud']:>7.2f}x {row['vs_best_endpoint']:>6.2f}x "
          f"{row['predicted_chosen_ms']:>10.1f} {row['predicted_error_pct']:>+6.1f}% "
          f"{len(row['measured_cuts'].split(';')):>3}/{row['units'] + 1:<3} {row['case_s']:>6.0f}", flush=True)


HEADER = (f"{'model':<10} {'bw':>5} {'rtt':>5} {'chosen':>7} {'oracle':>6} {'chosen ms':>10} {'oracle ms':>10} "
          f"{'ratio':>6} {'[min-max]':>11} {'vs edge':>8} {'vs cloud':>8} {'vs best':>7} {'pred ms':>10} "
          f"{'err':>7} {'cuts':>7} {'s':>6}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    p.add_argument("--bandwidths", nargs="+", default=DEFAULT_BANDWIDTHS, metavar="MBPS|3g|lte|wifi",
                   help="uplinks, Mbit/s or presets (default: %(default)s)")
    p.add_argument("--rtt", type=rtt_arg, default="0", metavar="MS|typical",
                   help="round-trip time paid once per request, ms, or 'typical' for the presets' "
                        "(3g 300, lte 70, wifi 28; default 0)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=10.0, metavar="F",
                   help="the emulated edge is F times slower than this machine (default 10)")
    p.add_argument("--repeats", type=int, default=5, metavar="R",
                   help="interleaved rounds: runs of every kept cut (median; default 5)")
    p.add_argument("--cloud-threads", type=int, default=None, metavar="N",
                   help="the cloud's torch threads (default: the cloud profile's, predicted with it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rounds' orders (default 0)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "decision_quality.csv")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    for label in args.bandwidths:
        try:
            bandwidth_arg(label)
            rtt_for(args.rtt, label)
        except (argparse.ArgumentTypeError, ValueError) as e:
            p.error(str(e))
    cuts_out = args.out.with_name(f"{args.out.stem}_cuts.csv")

    edge_predictor, cloud_predictor, cloud_threads, predicted_with = predictors(args.cloud_threads)
    x = fixed_input()
    models = {name: get_dnn_model(name) for name in args.models}
    for model in models.values():
        _ = model.fingerprint  # hashed once, before any clock starts
    rows, cut_rows = [], []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    with pinned_cloud(args.models, cloud_threads) as (cloud, pinning):
        print(f"edge: this process, 1 torch thread, emulating a device {args.edge_slowdown:g}x slower; "
              f"cloud: cloud_api.py child, {cloud_threads} torch thread(s); pinning: {pinning}")
        print(f"predicted: {predicted_with}; RTT {args.rtt} ms; {args.repeats} interleaved round(s); "
              "link paced by net.emulation.link.LinkPacer")
        print(HEADER, flush=True)
        for name, model in models.items():
            x = fixed_input(model.input_shape)  # each model's own input shape (fashion_net: 1x1x28x28)
            planner = ChainPlanner(model, edge=edge_predictor, cloud=cloud_predictor, edge_slowdown=args.edge_slowdown)
            log(f"{name}: warming up both sides")
            warm_up(model, x, cloud.port)
            for label in args.bandwidths:
                rtt_ms = rtt_for(args.rtt, label)
                log(f"  {name} at {label} ({parse_bandwidth(label):g} Mbit/s, RTT {rtt_ms:g} ms), elapsed "
                    f"{time.perf_counter() - t_start:.0f} s")
                row, per_cut = run_case(model, planner, x, cloud, label, rtt_ms, args.repeats, args.edge_slowdown,
                                        args.seed)
                rows.append(row)
                cut_rows.extend(per_cut)
                print_row(row)
    total_s = time.perf_counter() - t_start
    summary = summarize(rows, cut_rows)
    print_summary(summary, total_s)
    meta = provenance(host=HOST, edge_threads=1, cloud_threads=cloud_threads, edge_slowdown=args.edge_slowdown,
                      pinning=pinning, cloud=f"cloud_api.py subprocess --threads {cloud_threads}",
                      predictors=predicted_with, rtt=args.rtt, repeats=args.repeats, seed=args.seed,
                      warmup_runs=WARMUP_RUNS, link="net.emulation.link.LinkPacer",
                      method="benchmarks.measure: screening pass, then interleaved rounds over all kept candidates",
                      loadavg_before=" ".join(f"{v:.2f}" for v in load_before),
                      loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()),
                      run_s=round(total_s), **summary)
    write_csv_with_provenance(args.out, rows, COLUMNS, meta)
    write_csv_with_provenance(cuts_out, cut_rows, CUT_COLUMNS, meta)
    print(f"wrote {args.out} and {cuts_out}")
    return rows


if __name__ == "__main__":
    main()
