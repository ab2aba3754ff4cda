"""Cloud-load-aware cut: the throughput of 16 concurrent edges and one cloud, with the cut chosen
load-aware against load-blind, every answer checked against local inference.

  python -m benchmarks.load_aware_throughput [--model alex_net] [--edges 16] [--bandwidth wifi]
        [--edge-slowdown 16] [--duration-s 30] [--warmup-s 5] [--rounds 5] [--rtt 0]
        [--out CSV] [--requests-out CSV]

Set-up (one 2-core machine, everything through real sockets on 127.0.0.1):
- the cloud is `cloud_api.py -p 0 --threads 1 --preload MODEL` in a child process, every thread
  of it pinned to core 1 (os.sched_setaffinity on each thread, as in decision_quality.py). It
  serves each connection in a thread of its own, so concurrent requests share its one core, and
  it returns its load factor (net/load.py: recent compute times over the unloaded ones, EWMA)
  with every reply. Before the first round it serves every cut k = 0..N-1 alone, twice, so its
  load meter knows each cut's unloaded time (a cloud that has been up a while would);
- the edges are --edges threads of this process (default 16), pinned to core 0, torch at 1
  thread, each an edge device of its own: its own CloudClient (one persistent connection), its
  own uplink paced by its own net.emulation.link.LinkPacer at --bandwidth Mbit/s (+ --rtt), and an emulated
  device --edge-slowdown F times slower than this machine. Threads, not processes: 16 processes
  would hold 16 copies of torch and the model on 2 cores; the edges share the read-only model,
  torch releases the GIL while it computes, and an edge mostly waits (its emulated slowness, its
  link, the cloud). The edge process's CPU share is in the CSV (edge_cpu_pct);
- the emulated slowdown is net.edge.runner's, on the CPU clock: after its units an edge waits
  until F x their CPU time (time.thread_time) has passed since they started. 16 edges share
  core 0, and an edge part's wall time then includes the others' compute and GIL waits; a
  wall-time rule multiplied those by F too (measured in a first version: edge-only parts that
  needed ~45 ms of CPU took ~785 ms of wall time when the load-aware edges went home together,
  ~17x slower than asked, a penalty on the load-aware arm alone). edge_over_predicted
  (measured edge time over the planner's F x profile prediction, median) shows how faithful the
  emulation was;
- every edge runs a closed loop: the next of 8 fixed inputs, collaborative_inference(model,
  planner, x, client, bandwidth, rtt, partition, edge_slowdown=F, want_logits=True), the next
  request when the answer is in; --warmup-s untimed, then a --duration-s window. The planner
  predicts both sides with the 1-thread (edge) profile, the edge's times x F (the cloud runs at
  1 thread on this machine).

The arms differ only in how the cut is chosen:
- A, load-blind: partition = planner.best_cut_point(bandwidth, rtt, 1.0), the cut that is best
  when the cloud is idle, for every request;
- B, load-aware: partition=None: collaborative_inference takes planner.best_cut_point(bandwidth,
  rtt, client.cloud_load), the load of that edge's latest reply. An edge that moved all its work
  home (k = N) sends nothing, so when its load figure is older than --load-refresh-s (1 s) it
  asks the cloud (a `stats` request of a few hundred bytes, as the multi-task edge's bandwidth
  re-measurement does). The rule runs in arm A too, where every request gets a reply: it fires
  there only when a reply takes longer than that (load_refreshes counts them).
Arms alternate (A, B, B, A, A, B, ...: the arm that starts a round alternates; --rounds of
each) so that machine noise hits both; before each arm the cloud is left idle until its load
is under --settle-load (1.1).

Measured per arm and round: throughput_rps = answers completed in the window / the window (one
answer = one inference of one edge, whatever the cut); cloud_rps = the answers the cloud took
part in (k < N); cloud_cpu_ms_per_answer = the cloud process's CPU time in the window / answers
(its inverse: the answers per second a saturated cloud could give); the median latency
(collaborative_inference's measured total) of all requests and the range of the per-edge medians;
the cuts used (k:count); the load each decision saw (min/median/max); each process's CPU share,
and edge_runq_wait_ms, how long the edge threads together waited runnable for core 0 (Linux
schedstat) in the window.
Every answer, timed or not, is checked: its logits torch.equal the whole model run in this
process at 1 thread on the same input (computed before any clock); mismatches, fallbacks (the
cloud failed, the edge finished alone) and errors must all be 0. The figure is ratio_vs_blind =
throughput B / throughput A of the same round, median over rounds.

Why AlexNet, Wi-Fi (18.88 Mbit/s) and F = 16 (the defaults). AlexNet is compute-bound on one core
(27 ms a whole inference at 1 thread), so 16 edges saturate the cloud. F = 16 = the number of
edges: 16 edges each computing at most 1/16 of their time need at most one core, so even with all
of them at home core 0 is not oversubscribed and the emulation holds. At Wi-Fi an idle cloud wins:
predicted, cut 3 (after the first conv and pool, 187 KB) costs 44 + 79 + 24 = 147 ms, cloud-only
282 ms, cut 13 (after the convolutions, 37 KB) 256 + 16 + 10 = 282 ms, edge-only 421 ms; so the
load-blind cut is 3, leaving 90% of the work to the cloud. With 16 edges on cut 3 the cloud
reports a load of 13-15; from a load of ~11.5 cut 13 is predicted faster (the edge takes the
convolutions, 57% of the work) and from ~16 edge-only: the edges can take work back while still
using the cloud. Measured in 10-s probes here (1 round each; not the shipped figures): at F = 8-12
(100-200 Mbit/s or Wi-Fi) the load-aware edges herd: they see the same high load, all go home at
once, the cloud idles (19-64% busy) until its load figure decays (half-life 2 s), then they all
come back together; ratios 0.96-1.31, with core 0 80-91% busy at F <= 10. At Wi-Fi, F = 14: 1.35,
F = 16: 1.21, F = 18: 1.16, F = 20: 1.03 (cut 13 needs a load of ~15 there; it stayed under 13).
The bound on this machine is 2x: the work can use two cores instead of one. Where the figure falls
short of it: the edge and the cloud are the same CPU, so no layer is relatively cheaper at home and
the planner moves the convolutions only near saturation; and every edge reads the same lagging
load figure, so at times many go home at once and the cloud is under-used.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from benchmarks.measure import CLOUD_CORE, EDGE_CORE, can_pin, pin_threads, runqueue_wait_ms
from models import MODEL_NAMES, get_dnn_model
from net.apps.cli import bandwidth_arg, slowdown_arg
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from net.emulation.link import LinkPacer
from predictor import LatencyPredictor, Link
from predictor.planner import ChainPlanner
from utils.provenance import provenance, write_csv_with_provenance

HOST = "127.0.0.1"
NUM_INPUTS = 8
SEED = 0
SETTLE_LOAD = 1.1          # by default an arm starts once the cloud reports a load below this
SETTLE_TIMEOUT_S = 90.0
BARRIER_TIMEOUT_S = 120.0
CALIBRATION_PASSES = 2     # unloaded requests per cut before the first round
ARMS = ("blind", "aware")

COLUMNS = ["round", "arm", "model", "edges", "bandwidth_mbps", "rtt_ms", "edge_slowdown", "blind_cut",
           "duration_s", "completed", "throughput_rps", "cloud_served", "cloud_rps", "ratio_vs_blind",
           "median_latency_ms", "edge_median_latency_min_ms", "edge_median_latency_max_ms", "cuts",
           "load_min", "load_median", "load_max", "load_refreshes", "mismatches", "fallbacks", "errors",
           "cloud_cpu_pct", "cloud_cpu_ms_per_answer", "edge_cpu_pct", "edge_runq_wait_ms", "edge_over_predicted",
           "settle_s"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Request:
    edge: int
    done: float           # time.perf_counter() when the answer was in
    latency_ms: float     # collaborative_inference's measured total
    cut: int
    load: float           # the cloud load the decision saw (client.cloud_load)
    equal: bool           # torch.equal with the whole model run locally on the same input
    fallback: bool
    edge_ratio: float     # measured edge ms / predicted edge ms (nan at k = 0)


class Workload:
    """The model, its planner, the inputs and their answers from the whole model run here."""

    def __init__(self, model_name: str, edge_slowdown: float):
        self.model = get_dnn_model(model_name)
        _ = self.model.fingerprint  # hashed once, before any clock starts
        predictor = LatencyPredictor.load("edge")
        self.planner = ChainPlanner(self.model, edge=predictor, cloud=predictor, edge_slowdown=edge_slowdown)
        g = torch.Generator().manual_seed(SEED)
        self.inputs = [torch.randn(self.model.input_shape, generator=g) for _ in range(NUM_INPUTS)]
        with torch.no_grad():
            self.expected = [self.model(x) for x in self.inputs]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (all its threads, ended ones too), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calibrate(work: Workload, port: int) -> None:
    """Every cut served alone, so the cloud's load meter knows each one's unloaded time."""
    n = len(work.model)
    with CloudClient(HOST, port) as client, torch.no_grad():
        for _ in range(CALIBRATION_PASSES):
            for k in range(n):
                client.infer(work.model.name, work.model.fingerprint, k, work.model[:k](work.inputs[0]))


def settle(port: int, settle_load: float) -> float:
    """Wait until the cloud reports a load under `settle_load`; the seconds it took."""
    t0 = time.perf_counter()
    with CloudClient(HOST, port) as client:
        while True:
            client.stats()
            if client.cloud_load < settle_load or time.perf_counter() - t0 > SETTLE_TIMEOUT_S:
                return time.perf_counter() - t0
            time.sleep(0.25)


def run_arm(work: Workload, port: int, arm: str, args, blind_cut: int, cloud_pid: int) -> dict:
    """One arm: --edges closed-loop edges for --warmup-s + --duration-s; the row of its figures."""
    requests: list[Request] = []
    refreshes, errors, messages = [0] * args.edges, [0] * args.edges, []
    window: list[float] = []  # [start, end] of the timed window, set as all edges are ready

    def open_window() -> None:  # runs once, when every edge and the main thread have arrived
        t0 = time.perf_counter()
        window[:] = [t0 + args.warmup_s, t0 + args.warmup_s + args.duration_s]

    start = threading.Barrier(args.edges + 1, action=open_window)
    planner, model = work.planner, work.model
    partition = model.prefix(blind_cut) if arm == "blind" else None
    lock = threading.Lock()

    def edge(i: int) -> None:
        try:
            with CloudClient(HOST, port, pacer=LinkPacer(args.bandwidth), rtt_ms=args.rtt,
                             weights=(model.name, model.fingerprint)) as client:
                client.connect()
                start.wait(timeout=BARRIER_TIMEOUT_S)
                j = 0
                while time.perf_counter() < window[1]:
                    if time.monotonic() - client.cloud_load_at > args.load_refresh_s:
                        client.stats()  # an edge that sends nothing learns the load this way
                        refreshes[i] += 1
                    idx = (i + j) % NUM_INPUTS
                    j += 1
                    report = collaborative_inference(model, planner, work.inputs[idx], client,
                                                     Link(args.bandwidth, args.rtt), partition=partition,
                                                     edge_slowdown=args.edge_slowdown, want_logits=True)
                    done = time.perf_counter()
                    predicted_edge = planner.cut(report.cut_point, Link(args.bandwidth, args.rtt)).edge_ms
                    equal = report.logits is not None and torch.equal(report.logits, work.expected[idx])
                    with lock:
                        requests.append(Request(i, done, report.measured_ms.total, report.cut_point,
                                                report.cloud_load, equal, report.fallback,
                                                report.measured_ms.edge / predicted_edge if predicted_edge
                                                else float("nan")))
        except BaseException as e:  # counted and reported, never hidden; release the others
            errors[i] += 1
            messages.append(f"edge {i}: {type(e).__name__}: {e}")
            start.abort()

    threads = [threading.Thread(target=edge, args=(i,), daemon=True) for i in range(args.edges)]
    for t in threads:
        t.start()
    try:
        start.wait(timeout=BARRIER_TIMEOUT_S)
    except threading.BrokenBarrierError:  # an edge failed before the start: counted below
        open_window()
    time.sleep(max(0.0, window[0] - time.perf_counter()))
    cpu_edge0, cpu_cloud0 = os.times(), cpu_seconds(cloud_pid)
    wait0 = runqueue_wait_ms(os.getpid())
    time.sleep(max(0.0, window[1] - time.perf_counter()))
    cpu_edge1, cpu_cloud1 = os.times(), cpu_seconds(cloud_pid)
    wait1 = runqueue_wait_ms(os.getpid())
    for t in threads:
        t.join()

    timed = [r for r in requests if window[0] <= r.done <= window[1]]
    per_edge = [statistics.median(r.latency_ms for r in timed if r.edge == i)
                for i in range(args.edges) if any(r.edge == i for r in timed)]
    loads = [r.load for r in timed]
    n = len(model)
    edge_ratios = [r.edge_ratio for r in timed if r.cut > 0]
    fmt = lambda v: round(v, 3) if v == v else ""  # noqa: E731  (nan -> empty)
    return {
        "arm": arm, "model": model.name, "edges": args.edges, "bandwidth_mbps": args.bandwidth,
        "rtt_ms": args.rtt, "edge_slowdown": args.edge_slowdown, "blind_cut": blind_cut,
        "duration_s": args.duration_s, "completed": len(timed),
        "throughput_rps": round(len(timed) / args.duration_s, 3),
        "cloud_served": sum(r.cut < n for r in timed),
        "cloud_rps": round(sum(r.cut < n for r in timed) / args.duration_s, 3),
        "median_latency_ms": round(statistics.median(r.latency_ms for r in timed), 1) if timed else "",
        "edge_median_latency_min_ms": round(min(per_edge), 1) if per_edge else "",
        "edge_median_latency_max_ms": round(max(per_edge), 1) if per_edge else "",
        "cuts": ";".join(f"{k}:{c}" for k, c in sorted(Counter(r.cut for r in timed).items())),
        "load_min": fmt(min(loads)) if loads else "", "load_median": fmt(statistics.median(loads)) if loads else "",
        "load_max": fmt(max(loads)) if loads else "", "load_refreshes": sum(refreshes),
        # every answer of the arm is checked, timed or not
        "mismatches": sum(not r.equal for r in requests), "fallbacks": sum(r.fallback for r in requests),
        "errors": sum(errors),
        "cloud_cpu_pct": round(100 * (cpu_cloud1 - cpu_cloud0) / args.duration_s, 1),
        "cloud_cpu_ms_per_answer": round(1e3 * (cpu_cloud1 - cpu_cloud0) / len(timed), 2) if timed else "",
        "edge_cpu_pct": round(100 * ((cpu_edge1.user + cpu_edge1.system) - (cpu_edge0.user + cpu_edge0.system))
                              / args.duration_s, 1),
        "edge_runq_wait_ms": round(wait1 - wait0, 1),
        "edge_over_predicted": fmt(statistics.median(edge_ratios)) if edge_ratios else "",
        "first_problem": messages[0] if messages else "",
        "requests": [{"edge": q.edge, "t_s": round(q.done - window[0], 4), "cut": q.cut, "load": q.load,
                      "latency_ms": round(q.latency_ms, 2), "equal": q.equal, "fallback": q.fallback,
                      "edge_over_predicted": round(q.edge_ratio, 3) if q.edge_ratio == q.edge_ratio else ""}
                     for q in sorted(requests, key=lambda q: q.done)],
    }


def print_row(row: dict) -> None:
    print(f"{row['round']:>5} {row['arm']:>6} {row['completed']:>6} {row['throughput_rps']:>8.2f} "
          f"{row['cloud_rps']:>8.2f} {str(row['ratio_vs_blind']):>6} {str(row['median_latency_ms']):>8} "
          f"{str(row['load_median']):>6} {str(row['load_max']):>6} {row['cloud_cpu_pct']:>6} "
          f"{row['edge_cpu_pct']:>6} {str(row['edge_over_predicted']):>6} {row['mismatches']:>4}  {row['cuts']}",
          flush=True)


def cuts_by_cloud_load(planner: ChainPlanner, bandwidth_mbps: float, rtt_ms: float, max_load: float = 50.0) -> str:
    """Where the load-aware planner's cut changes as the cloud's load grows (steps of 0.5), e.g.
    "3 from 1, 13 from 11.5": what the load-aware edges choose at each load they read."""
    changes, previous = [], None
    for half_steps in range(2, int(max_load * 2) + 1):
        load = half_steps / 2
        cut = planner.best_cut_point(Link(bandwidth_mbps, rtt_ms, load))
        if cut != previous:
            changes.append(f"{cut} from {load:g}")
            previous = cut
    return ", ".join(changes)


def run_rounds(args, pinning: str | None, rows: list[dict], request_rows: list[dict], t_start: float) -> str:
    """The cloud, its calibration, then --rounds of both arms (load-blind first in odd rounds,
    load-aware first in even ones); rows appended. Returns the planner's cuts by cloud load."""
    work = Workload(args.model, args.edge_slowdown)
    n = len(work.model)
    blind_cut = work.planner.best_cut_point(Link(args.bandwidth, args.rtt, 1.0))
    print(f"{args.model}: {args.edges} edges, uplink {args.bandwidth:g} Mbit/s each, RTT {args.rtt:g} ms, edge "
          f"{args.edge_slowdown:g}x slower (CPU clock); load-blind cut {blind_cut}/{n} "
          f"({work.planner.labels[blind_cut]}); pinning: {pinning or 'none'}")
    if blind_cut == n:
        raise SystemExit("error: the idle-cloud cut already runs everything on the edge: no cloud to relieve "
                         "(use a faster --bandwidth or a larger --edge-slowdown)")
    with LocalCloud([args.model], threads=1) as cloud:
        if pinning:
            pin_threads(cloud.process.pid, {CLOUD_CORE})
            pin_threads(os.getpid(), {EDGE_CORE})
        calibrate(work, cloud.port)
        print(f"{'round':>5} {'arm':>6} {'done':>6} {'req/s':>8} {'cloud/s':>8} {'ratio':>6} {'p50 ms':>8} "
              f"{'load50':>6} {'loadmx':>6} {'cloud%':>6} {'edge%':>6} {'edge/p':>6} {'bad':>4}  cuts", flush=True)
        for r in range(1, args.rounds + 1):
            # which arm starts alternates by round, so neither always meets the machine first
            for arm in ARMS if r % 2 else ARMS[::-1]:
                settle_s = settle(cloud.port, args.settle_load)
                log(f"round {r} {arm}: cloud settled in {settle_s:.1f} s; "
                    f"elapsed {time.perf_counter() - t_start:.0f} s")
                row = run_arm(work, cloud.port, arm, args, blind_cut, cloud.process.pid)
                row["round"], row["settle_s"], row["ratio_vs_blind"] = r, round(settle_s, 1), ""
                rows.append(row)
                if args.requests_out:
                    request_rows.extend({"round": r, "arm": arm, **req} for req in row.pop("requests"))
                else:
                    row.pop("requests")
            pair = {row["arm"]: row for row in rows[-2:]}
            blind = pair["blind"]["throughput_rps"]
            pair["aware"]["ratio_vs_blind"] = round(pair["aware"]["throughput_rps"] / blind, 3) if blind else ""
            for row in rows[-2:]:
                print_row(row)
                if row["first_problem"]:
                    log(f"      first problem: {row['first_problem']}")
    return cuts_by_cloud_load(work.planner, args.bandwidth, args.rtt)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODEL_NAMES, default="alex_net")
    p.add_argument("--edges", type=int, default=16, help="concurrent edges (default %(default)s)")
    p.add_argument("--duration-s", type=float, default=30.0,
                   help="timed window per arm and round (default %(default)s)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="untimed start of each arm (default %(default)s)")
    p.add_argument("--rounds", type=int, default=5,
                   help="rounds of both arms, the one that starts alternating (default %(default)s)")
    p.add_argument("--bandwidth", type=bandwidth_arg, default=bandwidth_arg("wifi"), metavar="MBPS|3g|lte|wifi",
                   help="each edge's uplink, Mbit/s or a preset (default wifi, 18.88 Mbit/s)")
    p.add_argument("--rtt", type=float, default=0.0, help="round-trip time, ms (default 0)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=16.0, metavar="F",
                   help="each emulated edge is F times slower than this machine (default 16)")
    p.add_argument("--load-refresh-s", type=float, default=1.0,
                   help="an edge whose load figure is older than this asks the cloud for it (default 1)")
    p.add_argument("--settle-load", type=float, default=SETTLE_LOAD,
                   help="each arm starts once the idle cloud's load is under this (default %(default)s)")
    p.add_argument("--requests-out", type=Path, default=None,
                   help="also write every request (edge, time, cut, load, latency, check) to this CSV")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "load_aware_throughput.csv")
    args = p.parse_args(argv)
    if args.edges < 1 or args.rounds < 1 or not args.duration_s > 0 or args.warmup_s < 0 or args.rtt < 0:
        p.error("--edges and --rounds must be >= 1, --duration-s > 0, --warmup-s and --rtt >= 0")
    args.bandwidth = float(args.bandwidth)

    threads_before, affinity_before = torch.get_num_threads(), os.sched_getaffinity(0)
    pinned = can_pin()
    pinning = (f"edges (threads of this process) on core {EDGE_CORE}, cloud (child) on core {CLOUD_CORE}"
               if pinned else f"none: cores {sorted(affinity_before)} do not include {EDGE_CORE} and {CLOUD_CORE}")
    torch.set_num_threads(1)
    rows: list[dict] = []
    request_rows: list[dict] = []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    try:
        cut_by_cloud_load = run_rounds(args, pinning if pinned else None, rows, request_rows, t_start)
    finally:
        if pinned:
            pin_threads(os.getpid(), affinity_before)
        torch.set_num_threads(threads_before)
    total_s = time.perf_counter() - t_start

    ratios = [r["ratio_vs_blind"] for r in rows if r["arm"] == "aware" and r["ratio_vs_blind"] != ""]
    def med(arm: str, key: str):
        values = [r[key] for r in rows if r["arm"] == arm and r[key] != ""]
        return statistics.median(values) if values else float("nan")

    summary = {"throughput_blind_median_rps": round(med("blind", "throughput_rps"), 3),
               "throughput_aware_median_rps": round(med("aware", "throughput_rps"), 3),
               "cloud_rps_blind_median": round(med("blind", "cloud_rps"), 3),
               "cloud_rps_aware_median": round(med("aware", "cloud_rps"), 3),
               "ratio_median": round(statistics.median(ratios), 3) if ratios else "",
               "cloud_cpu_ms_per_answer_blind_median": round(med("blind", "cloud_cpu_ms_per_answer"), 2),
               "cloud_cpu_ms_per_answer_aware_median": round(med("aware", "cloud_cpu_ms_per_answer"), 2),
               "mismatches_total": sum(r["mismatches"] for r in rows),
               "fallbacks_total": sum(r["fallbacks"] for r in rows), "errors_total": sum(r["errors"] for r in rows)}
    print(f"throughput (median of {args.rounds} round(s)): load-blind {summary['throughput_blind_median_rps']} req/s, "
          f"load-aware {summary['throughput_aware_median_rps']} req/s; ratio aware/blind per round "
          f"{ratios}, median {summary['ratio_median']} (the paper: 1.5x on average); mismatches "
          f"{summary['mismatches_total']}, fallbacks {summary['fallbacks_total']}, errors {summary['errors_total']}; "
          f"run time {total_s:.0f} s")
    meta = provenance(host=HOST, edge_threads=1, cloud_threads=1, edge_slowdown=args.edge_slowdown, seed=SEED,
                      edge_clock="cpu (net.edge.runner.emulate_slowdown)",
                      pinning=pinning, cloud="cloud_api.py subprocess --threads 1, connections served by threads",
                      edges=f"{args.edges} threads of this process, one connection and one LinkPacer each",
                      predictors="edge profile for both sides (cloud at 1 thread), edge x slowdown",
                      link="net.emulation.link.LinkPacer", bandwidth_mbps=args.bandwidth, rtt_ms=args.rtt,
                      warmup_s=args.warmup_s, duration_s=args.duration_s, rounds=args.rounds,
                      load_refresh_s=args.load_refresh_s, settle_load=args.settle_load,
                      cut_by_cloud_load=cut_by_cloud_load,
                      calibration=f"every cut alone x{CALIBRATION_PASSES} before the first round",
                      inputs=NUM_INPUTS, check="torch.equal of the logits with the whole model run here at 1 thread",
                      loadavg_before=" ".join(f"{v:.2f}" for v in load_before),
                      loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()), run_s=round(total_s), **summary)
    write_csv_with_provenance(args.out, rows, COLUMNS + ["first_problem"], meta)
    print(f"wrote {args.out}")
    if args.requests_out:
        write_csv_with_provenance(args.requests_out, request_rows, list(request_rows[0]) if request_rows else [], meta)
        print(f"wrote {args.requests_out}")
    bad = summary["mismatches_total"] + summary["fallbacks_total"] + summary["errors_total"]
    if bad:
        raise SystemExit(f"error: {summary['mismatches_total']} mismatched answers, {summary['fallbacks_total']} "
                         f"fallbacks, {summary['errors_total']} errors")
    return rows


if __name__ == "__main__":
    main()
