"""Decision quality: measured latency of the cut the partition search chooses, against the best
cut found by measuring (the oracle), edge-only and cloud-only. The headline benchmark.

  python -m benchmarks.decision_quality [--models ...] [--bandwidths 3g lte wifi 1 10 100 1000]
                                        [--edge-slowdown F] [--repeats N] [--out CSV]

Everything goes through real sockets on 127.0.0.1 and the paced link (net.emulation.link.LinkPacer at
each bandwidth, Mbit/s; RTT 0). Set-up, so that the two sides do not steal each other's core on
a 2-core machine:
- the cloud is `cloud_api.py -p 0 --threads 1 --preload MODELS` in a child process, every thread
  of it pinned to core 1 (os.sched_setaffinity on each thread: on Linux a pid alone pins only
  the main thread, and the thread serving a connection was created before we could pin);
- the edge is this process at 1 torch thread, pinned to core 0, emulating a device F times
  slower (--edge-slowdown, default 10) with collaborative_inference(..., edge_slowdown=F).
Because the cloud runs at 1 thread on one core of this machine, its latency is predicted with the
1-thread (edge) profile: ChainPlanner(model, edge=LatencyPredictor.load("edge"),
cloud=LatencyPredictor.load("edge"), edge_slowdown=F). Each model is warmed up on both sides
before anything is timed.

Per model and bandwidth:
1. chosen = the planner's best cut. A measured latency is the median of --repeats runs of
   collaborative_inference(partition=k), each the edge report's measured_ms.total.
2. The oracle measures cuts in ascending predicted total (good cuts early) and skips a cut
   whose predicted transfer time alone (tensor bytes * 8 / bandwidth) already exceeds the best
   measured total so far: the pacer makes N bytes take at least N / rate, so such a cut cannot
   win and the oracle stays exact. Cloud-only (k=0), edge-only (k=N) and the chosen cut are
   always measured. oracle = the cut with the smallest measured median.
3. Chosen and oracle are re-measured interleaved (chosen, oracle, chosen, oracle, ... --repeats
   times each), and the ratio of those medians is the reported chosen / oracle (1 when they are
   the same cut). Speed-ups over edge-only and cloud-only use the medians of step 2, where all
   three were measured alike.
Summary: geometric means of the ratio and the speed-ups, the worst ratio; targets geomean
ratio <= 1.05 and worst <= 1.25. Per-cut measurements (predicted and measured edge, transfer,
cloud, total) go to a second CSV beside --out (NAME_cuts.csv), with how long each side's
threads waited for a core while runnable (Linux schedstat run-queue wait, median per run): other
processes on the machine show there, and the edge's share is stretched F times by the emulated
slowdown, which waits (F-1)x the edge part's wall time. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from models import MODEL_NAMES, get_dnn_model
from net.apps.cli import bandwidth_arg, slowdown_arg
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.edge.runner import EdgeReport, collaborative_inference
from net.emulation.link import LinkPacer, parse_bandwidth
from predictor import LatencyPredictor, Link, send_ms
from predictor.planner import ChainPlanner
from utils.image import fixed_input
from utils.provenance import provenance, write_csv_with_provenance

HOST = "127.0.0.1"
DEFAULT_BANDWIDTHS = ["3g", "lte", "wifi", "1", "10", "100", "1000"]
EDGE_CORE, CLOUD_CORE = 0, 1
WARMUP_RUNS = 2
TARGET_GEOMEAN_RATIO, TARGET_WORST_RATIO = 1.05, 1.25

COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "units", "edge_slowdown", "chosen_cut", "chosen_layer",
           "oracle_cut", "oracle_layer", "chosen_ms", "oracle_ms", "ratio", "chosen_search_ms", "search_ratio",
           "edge_only_ms", "cloud_only_ms", "speedup_vs_edge", "speedup_vs_cloud",
           "predicted_chosen_ms", "predicted_error_pct", "measured_cuts", "skipped_cuts", "runs",
           "edge_runq_wait_ms", "cloud_runq_wait_ms", "case_s"]
CUT_COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "phase", "cut", "layer", "runs", "transfer_bytes",
               "predicted_edge_ms", "predicted_transfer_ms", "predicted_cloud_ms", "predicted_total_ms",
               "edge_ms", "transfer_ms", "cloud_ms", "total_ms", "overhead_ms",
               "edge_runq_wait_ms", "cloud_runq_wait_ms"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- pinning

def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and {EDGE_CORE, CLOUD_CORE} <= os.sched_getaffinity(0)


def pin_threads(pid: int, cores: set[int]) -> None:
    """Pin every thread of process `pid` (threads it creates later inherit the pinning)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except ProcessLookupError:  # a thread that has just ended
            pass


def runqueue_wait_ms(pid: int) -> float:
    """Total time the threads of `pid` have waited runnable for a core (schedstat field 2), ms."""
    total_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total_ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that has just ended; no schedstat
            pass
    return total_ns / 1e6


# ----------------------------------------------------------------------------- measuring

@dataclass
class Run:
    report: EdgeReport
    edge_runq_wait_ms: float   # this process's threads waiting for a core during the run
    cloud_runq_wait_ms: float  # the cloud's


def median_times(runs: list[Run]) -> dict:
    """Median of each measured part separately (and of the total), over the runs of one cut."""
    med = lambda key: statistics.median(getattr(r.report.measured_ms, key) for r in runs)  # noqa: E731
    return {"edge_ms": med("edge"), "transfer_ms": med("transfer"), "cloud_ms": med("cloud"),
            "total_ms": med("total"), "overhead_ms": statistics.median(r.report.overhead_ms for r in runs),
            "edge_runq_wait_ms": statistics.median(r.edge_runq_wait_ms for r in runs),
            "cloud_runq_wait_ms": statistics.median(r.cloud_runq_wait_ms for r in runs)}


class Case:
    """One model at one bandwidth: runs collaborative inference at any cut, keeps every report."""

    def __init__(self, model, planner: ChainPlanner, x: torch.Tensor, client: CloudClient, label: str,
                 bandwidth_mbps: float, edge_slowdown: float, cloud_pid: int):
        self.model, self.planner, self.x, self.client = model, planner, x, client
        self.cloud_pid = cloud_pid
        self.runs = 0
        self.edge_runq_wait_ms = self.cloud_runq_wait_ms = 0.0
        self.label, self.bandwidth_mbps, self.edge_slowdown = label, bandwidth_mbps, edge_slowdown
        self.cut_rows: list[dict] = []

    def run(self, k: int) -> Run:
        edge_wait, cloud_wait = runqueue_wait_ms(os.getpid()), runqueue_wait_ms(self.cloud_pid)
        report = collaborative_inference(self.model, self.planner, self.x, self.client, Link(self.bandwidth_mbps),
                                         partition=self.model.prefix(k), edge_slowdown=self.edge_slowdown)
        run = Run(report, runqueue_wait_ms(os.getpid()) - edge_wait, runqueue_wait_ms(self.cloud_pid) - cloud_wait)
        if report.fallback:  # a local run would be timed as if it were collaborative: never
            raise SystemExit(f"error: {self.model.name} at cut {k}: the cloud failed: {report.fallback_reason}")
        self.runs += 1
        self.edge_runq_wait_ms += run.edge_runq_wait_ms
        self.cloud_runq_wait_ms += run.cloud_runq_wait_ms
        return run

    def record(self, phase: str, k: int, runs: list[Run]) -> dict | None:
        cut = self.planner.cut(k, Link(self.bandwidth_mbps))
        measured = median_times(runs) if runs else {}
        row = {"model": self.model.name, "bandwidth": self.label, "bandwidth_mbps": self.bandwidth_mbps,
               "phase": phase, "cut": k, "layer": cut.label, "runs": len(runs),
               "transfer_bytes": runs[0].report.transfer_bytes if runs else cut.transfer_bytes,
               "predicted_edge_ms": round(cut.edge_ms, 3), "predicted_transfer_ms": round(cut.transfer_ms, 3),
               "predicted_cloud_ms": round(cut.cloud_ms, 3), "predicted_total_ms": round(cut.total_ms, 3),
               **{key: round(measured[key], 3) if measured else "" for key in
                  ("edge_ms", "transfer_ms", "cloud_ms", "total_ms", "overhead_ms",
                   "edge_runq_wait_ms", "cloud_runq_wait_ms")}}
        self.cut_rows.append(row)
        return measured or None

    def median_ms(self, phase: str, k: int, runs: list[Run]) -> float:
        """Record the runs of cut k (at least one: --repeats >= 1) and return their median total ms."""
        measured = self.record(phase, k, runs)
        if measured is None:
            raise ValueError(f"no runs of cut {k} to take a median of")
        return measured["total_ms"]

    def measure(self, k: int, repeats: int) -> float:
        runs = [self.run(k) for _ in range(repeats)]
        return self.median_ms("search", k, runs)

    def search_order(self, chosen: int) -> tuple[list[int], set[int]]:
        """Cuts in ascending predicted total (good ones early), and those always measured."""
        n, bw = self.planner.num_units, self.bandwidth_mbps
        return sorted(range(n + 1), key=lambda k: (self.planner.cut(k, Link(bw)).total_ms, k)), {0, n, chosen}

    def transfer_only_ms(self, k: int) -> float:
        return send_ms(self.planner.cut_bytes[k], self.bandwidth_mbps)

    def describe(self, k: int) -> str:
        return (f"cut {k:>2}/{self.planner.num_units}: predicted {self.planner.cut(k, Link(self.bandwidth_mbps)).total_ms:9.1f}; "
                f"run-queue wait edge {self.cut_rows[-1]['edge_runq_wait_ms']} cloud "
                f"{self.cut_rows[-1]['cloud_runq_wait_ms']} ms")

    def oracle_search(self, chosen: int, repeats: int) -> tuple[dict[int, float], list[int]]:
        """Median measured total of every candidate that could be the best; those skipped (a
        candidate whose predicted transfer alone exceeds the best measured total so far: the
        pacer makes N bytes take at least N / rate, so it cannot win)."""
        order, forced = self.search_order(chosen)
        measured, skipped = {}, []
        best_ms = math.inf
        for k in order:
            if k not in forced and self.transfer_only_ms(k) > best_ms:
                skipped.append(k)
                self.record("skipped", k, [])
                continue
            t0 = time.perf_counter()
            measured[k] = self.measure(k, repeats)
            best_ms = min(best_ms, measured[k])
            log(f"    {self.describe(k)}: measured {measured[k]:9.1f} ms (best so far {best_ms:.1f}; "
                f"{time.perf_counter() - t0:.1f} s)")
        return measured, skipped

    def interleaved(self, chosen: int, oracle: int, repeats: int) -> tuple[float, float]:
        """Chosen and oracle re-measured alternately: (chosen ms, oracle ms), medians."""
        runs: dict[int, list[Run]] = {chosen: [], oracle: []}
        for _ in range(repeats):
            for k in dict.fromkeys((chosen, oracle)):  # once when they are the same cut
                runs[k].append(self.run(k))
        med = {k: self.median_ms("recheck", k, per_cut) for k, per_cut in runs.items()}
        return med[chosen], med[oracle]


@torch.no_grad()
def warm_up(model, x: torch.Tensor, port: int) -> None:
    """Both sides run the whole model before anything is timed (the first passes are the slowest)."""
    for _ in range(WARMUP_RUNS):
        model(x.clone())
    everything = model.prefix(0)  # the cloud runs the whole model
    sent = model.run_edge(x, everything)
    with CloudClient(HOST, port) as client:  # unpaced: only the cloud's compute matters here
        for _ in range(WARMUP_RUNS):
            client.infer_tensors(model.name, model.fingerprint, sent, cut=everything.wire_cut)


def run_case(model, planner: ChainPlanner, x: torch.Tensor, cloud: LocalCloud, label: str, repeats: int,
             edge_slowdown: float) -> tuple[dict, list[dict]]:
    t_case = time.perf_counter()
    bw = parse_bandwidth(label)
    n = planner.num_units
    chosen = planner.best_cut_point(Link(bw))
    with CloudClient(HOST, cloud.port, pacer=LinkPacer(bw)) as client:
        client.connect()
        client.probe(8 * 1024)  # one paced round trip on this connection before timing
        case = Case(model, planner, x, client, label, bw, edge_slowdown, cloud.process.pid)
        measured, skipped = case.oracle_search(chosen, repeats)
        oracle = min(measured, key=lambda k: (measured[k], k))
        chosen_ms, oracle_ms = case.interleaved(chosen, oracle, repeats)
    ratio = 1.0 if chosen == oracle else chosen_ms / oracle_ms
    predicted = planner.cut(chosen, Link(bw)).total_ms
    row = {"model": model.name, "bandwidth": label, "bandwidth_mbps": bw, "units": n,
           "edge_slowdown": edge_slowdown,
           "chosen_cut": chosen, "chosen_layer": planner.labels[chosen],
           "oracle_cut": oracle, "oracle_layer": planner.labels[oracle],
           "chosen_ms": round(chosen_ms, 2), "oracle_ms": round(oracle_ms, 2), "ratio": round(ratio, 4),
           "chosen_search_ms": round(measured[chosen], 2),
           "search_ratio": round(measured[chosen] / measured[oracle], 4),
           "edge_only_ms": round(measured[n], 2), "cloud_only_ms": round(measured[0], 2),
           "speedup_vs_edge": round(measured[n] / measured[chosen], 3),
           "speedup_vs_cloud": round(measured[0] / measured[chosen], 3),
           "predicted_chosen_ms": round(predicted, 2),
           "predicted_error_pct": round(100 * (predicted - chosen_ms) / chosen_ms, 1),
           "measured_cuts": ";".join(str(k) for k in sorted(measured)),
           "skipped_cuts": len(skipped), "runs": case.runs,
           "edge_runq_wait_ms": round(case.edge_runq_wait_ms, 1),
           "cloud_runq_wait_ms": round(case.cloud_runq_wait_ms, 1), "case_s": round(time.perf_counter() - t_case, 1)}
    return row, case.cut_rows


def geomean(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def print_row(row: dict) -> None:
    print(f"{row['model']:<10} {row['bandwidth']:>5} {row['chosen_cut']:>3}/{row['units']:<3} {row['oracle_cut']:>6} "
          f"{row['chosen_ms']:>10.1f} {row['oracle_ms']:>10.1f} {row['ratio']:>6.3f} "
          f"{row['speedup_vs_edge']:>7.2f}x {row['speedup_vs_cloud']:>7.2f}x "
          f"{row['predicted_chosen_ms']:>10.1f} {row['predicted_error_pct']:>+6.1f}% "
          f"{len(row['measured_cuts'].split(';')):>3}/{row['units'] + 1:<3} "
          f"{row['edge_runq_wait_ms'] + row['cloud_runq_wait_ms']:>7.0f} {row['case_s']:>6.0f}", flush=True)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    p.add_argument("--bandwidths", nargs="+", default=DEFAULT_BANDWIDTHS, metavar="MBPS|3g|lte|wifi",
                   help="uplinks, Mbit/s or presets (default: %(default)s)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=10.0, metavar="F",
                   help="the emulated edge is F times slower than this machine (default 10)")
    p.add_argument("--repeats", type=int, default=3, help="runs per measured latency (median; default 3)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "decision_quality.csv")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    for label in args.bandwidths:
        try:
            bandwidth_arg(label)
        except argparse.ArgumentTypeError as e:
            p.error(str(e))
    cuts_out = args.out.with_name(f"{args.out.stem}_cuts.csv")

    threads_before, affinity_before = torch.get_num_threads(), os.sched_getaffinity(0)
    pinned = can_pin()
    pinning = (f"edge (this process) on core {EDGE_CORE}, cloud (child) on core {CLOUD_CORE}" if pinned
               else f"none: cores {sorted(affinity_before)} do not include {EDGE_CORE} and {CLOUD_CORE}")
    torch.set_num_threads(1)
    edge_predictor = LatencyPredictor.load("edge")
    x = fixed_input()
    models = {name: get_dnn_model(name) for name in args.models}
    for model in models.values():
        _ = model.fingerprint  # hashed once, before any clock starts
    print(f"edge: this process, 1 torch thread, emulating a device {args.edge_slowdown:g}x slower; "
          f"cloud: cloud_api.py child, 1 torch thread; pinning: {pinning}")
    print("cloud latency predicted with the 1-thread (edge) profile, edge latency with the same x "
          f"{args.edge_slowdown:g}; RTT 0; {args.repeats} run(s) per median; link paced by net.emulation.link.LinkPacer")
    rows, cut_rows = [], []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    try:
        with LocalCloud(args.models, threads=1) as cloud:
            if pinned:
                pin_threads(cloud.process.pid, {CLOUD_CORE})
                pin_threads(os.getpid(), {EDGE_CORE})
            header = (f"{'model':<10} {'bw':>5} {'chosen':>7} {'oracle':>6} {'chosen ms':>10} {'oracle ms':>10} "
                      f"{'ratio':>6} {'vs edge':>8} {'vs cloud':>8} {'pred ms':>10} {'err':>7} {'cuts':>7} "
                      f"{'wait ms':>7} {'s':>6}")
            print(header, flush=True)
            for name, model in models.items():
                x = fixed_input(model.input_shape)  # each model's own input shape (fashion_net: 1x1x28x28)
                planner = ChainPlanner(model, edge=edge_predictor, cloud=edge_predictor,
                                            edge_slowdown=args.edge_slowdown)
                log(f"{name}: warming up both sides")
                warm_up(model, x, cloud.port)
                for label in args.bandwidths:
                    log(f"  {name} at {label} ({parse_bandwidth(label):g} Mbit/s), elapsed "
                        f"{time.perf_counter() - t_start:.0f} s")
                    row, per_cut = run_case(model, planner, x, cloud, label, args.repeats, args.edge_slowdown)
                    rows.append(row)
                    cut_rows.extend(per_cut)
                    print_row(row)
    finally:
        if pinned:
            pin_threads(os.getpid(), affinity_before)
        torch.set_num_threads(threads_before)
    total_s = time.perf_counter() - t_start

    ratios = [r["ratio"] for r in rows]
    worst = max(rows, key=lambda r: r["ratio"])
    summary = {"geomean_ratio": geomean(ratios), "worst_ratio": worst["ratio"],
               "geomean_speedup_vs_edge": geomean([r["speedup_vs_edge"] for r in rows]),
               "geomean_speedup_vs_cloud": geomean([r["speedup_vs_cloud"] for r in rows])}
    exact = sum(r["chosen_cut"] == r["oracle_cut"] for r in rows)
    print(f"chosen = oracle in {exact}/{len(rows)} cases")
    print(f"geomean chosen/oracle {summary['geomean_ratio']:.3f} (target <= {TARGET_GEOMEAN_RATIO}: "
          f"{'met' if summary['geomean_ratio'] <= TARGET_GEOMEAN_RATIO else 'MISSED'}); worst "
          f"{worst['ratio']:.3f} ({worst['model']} at {worst['bandwidth']}; target <= {TARGET_WORST_RATIO}: "
          f"{'met' if worst['ratio'] <= TARGET_WORST_RATIO else 'MISSED'})")
    print(f"geomean speed-up of the chosen cut: {summary['geomean_speedup_vs_edge']:.2f}x over edge-only, "
          f"{summary['geomean_speedup_vs_cloud']:.2f}x over cloud-only; run time {total_s:.0f} s")
    meta = provenance(host=HOST, edge_threads=1, cloud_threads=1, edge_slowdown=args.edge_slowdown,
                      pinning=pinning, cloud="cloud_api.py subprocess --threads 1",
                      predictors="edge profile for both sides (cloud at 1 thread), edge x slowdown",
                      rtt_ms=0, repeats=args.repeats, warmup_runs=WARMUP_RUNS, link="net.emulation.link.LinkPacer",
                      loadavg_before=" ".join(f"{v:.2f}" for v in load_before),
                      loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()),
                      run_s=round(total_s), **{k: round(v, 4) for k, v in summary.items()})
    write_csv_with_provenance(args.out, rows, COLUMNS, meta)
    write_csv_with_provenance(cuts_out, cut_rows, CUT_COLUMNS, meta)
    print(f"wrote {args.out} and {cuts_out}")
    return rows


if __name__ == "__main__":
    main()
