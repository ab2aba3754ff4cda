"""Decision quality for the DAG models (ResNet-18, GoogLeNet): measured latency of the partition
the min-cut search chooses, against the best of a set of measured partitions (the oracle),
edge-only and cloud-only. The DAG counterpart of benchmarks.decision_quality.

  python -m benchmarks.dag_decision_quality [--models res_net google_net] [--bandwidths 3g lte wifi]
                                            [--edge-slowdown F] [--repeats N] [--sample N]
                                            [--seed S] [--out CSV]

The set-up is decision_quality's (its helpers are imported): a real cloud, `cloud_api.py -p 0
--threads 1 --preload MODELS` in a child process, every thread pinned to core 1; the edge is this
process at 1 torch thread pinned to core 0, emulating a device F times slower (--edge-slowdown,
default 10); real sockets on 127.0.0.1 through the paced link (net.emulation.link.LinkPacer; RTT 0). The
cloud runs at 1 thread on one core of this machine, so both sides are predicted with the 1-thread
(edge) profile: DagPlanner(model, edge=edge profile, cloud=edge profile, edge_slowdown=F).

A partition is the set of nodes the edge runs (always closed under their inputs); every tensor an
edge node sends to a cloud node crosses once, all in one request, through
net.edge.runner.collaborative_inference(..., partition=model.partition(edge_nodes)). The candidates, per model (the
same node sets at every bandwidth):
- cloud-only (the input alone on the edge) and edge-only (every node);
- boundary: every prefix of the traced (topological) order across which exactly one tensor
  crosses: between residual / inception blocks, and between the layers of the stem and the head;
- a seeded random sample of --sample other valid partitions, half of them prefixes of the traced
  order across which several tensors cross (inside a residual or inception block), half prefixes
  of random topological orders (which cut the branches of a block at different depths);
- the partition the planner chooses at that bandwidth (min_cut), whatever it is.
The oracle measures them in ascending predicted total and skips a candidate whose predicted
transfer time alone (bytes of the tensors crossing * 8 / bandwidth) exceeds the best measured
total so far: the pacer makes N bytes take at least N / rate, so it could not win (still exact
over the candidates). Cloud-only, edge-only and the chosen partition are always measured. Then
chosen and oracle are re-measured interleaved and the ratio of those medians is chosen / oracle
(1 when they are the same partition); the speed-ups use the medians of the search, where all were
measured alike. Every answer the cloud returns is compared with local inference of the whole
model in this process (top-5 indices equal, probabilities within 1e-5 relative): `answers_ok`
counts the runs that matched, out of `runs`.

Results: --out (one row per model and bandwidth) and NAME_partitions.csv beside it (every
candidate: origin, nodes on the edge, tensors crossing, bytes, predicted and measured parts, or
phase "skipped"; tensor_bytes are the tensors' bytes, transfer_bytes the whole request frame as
sent), both with provenance. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmarks.decision_quality import (
    CLOUD_CORE,
    EDGE_CORE,
    HOST,
    RESULTS_DIR,
    TARGET_GEOMEAN_RATIO,
    TARGET_WORST_RATIO,
    WARMUP_RUNS,
    Case,
    Run,
    can_pin,
    geomean,
    log,
    median_times,
    pin_threads,
    runqueue_wait_ms,
    warm_up,
)
from models.dag import DAG_MODEL_NAMES, DagModel, get_dag_model
from net.apps.cli import bandwidth_arg, slowdown_arg
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.edge.runner import collaborative_inference
from net.emulation.link import LinkPacer, parse_bandwidth
from predictor import LatencyPredictor, Link, Plan, send_ms
from predictor.planner import DagPlanner
from predictor.planner.dag_cut import is_valid
from utils.classes import top_k
from utils.image import fixed_input
from utils.provenance import provenance, write_csv_with_provenance

DEFAULT_BANDWIDTHS = ["3g", "lte", "wifi"]
DEFAULT_SAMPLE = 16
ANSWER_RTOL = 1e-5

COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "nodes", "edge_slowdown", "candidates",
           "chosen_origin", "chosen_edge_nodes", "chosen_prefix", "chosen_tensors", "chosen_crossing", "chosen_bytes",
           "oracle_origin", "oracle_edge_nodes", "oracle_prefix", "oracle_tensors", "oracle_crossing",
           "chosen_ms", "oracle_ms", "ratio", "chosen_search_ms", "search_ratio",
           "edge_only_ms", "cloud_only_ms", "speedup_vs_edge", "speedup_vs_cloud",
           "predicted_chosen_ms", "predicted_error_pct", "measured", "skipped", "runs", "answers_ok",
           "edge_runq_wait_ms", "cloud_runq_wait_ms", "case_s"]
PARTITION_COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "phase", "candidate", "origin", "edge_nodes",
                     "prefix", "tensors", "crossing", "runs", "answers_ok", "tensor_bytes", "transfer_bytes",
                     "predicted_edge_ms", "predicted_transfer_ms", "predicted_cloud_ms", "predicted_total_ms",
                     "edge_ms", "transfer_ms", "cloud_ms", "total_ms", "overhead_ms",
                     "edge_runq_wait_ms", "cloud_runq_wait_ms"]


# ----------------------------------------------------------------------------- candidates

@dataclass(frozen=True)
class Candidate:
    origin: str                # cloud-only, edge-only, boundary, prefix, random, chosen
    edge_nodes: frozenset[str]  # always with the input
    prefix: int | None          # k when these are the first k computing nodes of the traced order


def random_down_set(model: DagModel, rng: random.Random) -> frozenset[str]:
    """A prefix of a random topological order (Kahn's algorithm, a random ready node each step)
    of random length: any valid partition can come out, not only the traced order's prefixes."""
    names = list(model.nodes)
    consumers: dict[str, list[str]] = {name: [] for name in names}
    waiting = {name: len(set(info.inputs)) for name, info in model.nodes.items()}
    for name, info in model.nodes.items():
        for u in set(info.inputs):
            consumers[u].append(name)
    size = rng.randint(2, len(names) - 1)  # the input and at least one node; not every node
    ready = [model.input_name]
    taken: list[str] = []
    while len(taken) < size:
        node = ready.pop(rng.randrange(len(ready)))
        taken.append(node)
        for v in consumers[node]:
            waiting[v] -= 1
            if waiting[v] == 0:
                ready.append(v)
    return frozenset(taken)


def model_candidates(model: DagModel, sample: int, seed: int) -> list[Candidate]:
    """Cloud-only, edge-only, every single-tensor boundary of the traced order, and `sample` other
    valid partitions (seeded): half traced-order prefixes inside blocks, half random ones."""
    n = len(model)
    prefixes = {k: model.prefix(k).edge_nodes for k in range(n + 1)}
    width = {k: len(model.crossing(prefixes[k])) for k in range(1, n)}
    out = [Candidate("cloud-only", prefixes[0], 0), Candidate("edge-only", prefixes[n], n)]
    out += [Candidate("boundary", prefixes[k], k) for k in range(1, n) if width[k] == 1]
    rng = random.Random(seed)
    inside = [k for k in range(1, n) if width[k] > 1]
    out += [Candidate("prefix", prefixes[k], k) for k in sorted(rng.sample(inside, min(sample // 2, len(inside))))]
    seen = {c.edge_nodes for c in out} | set(prefixes.values())
    wanted, attempts = sample - sum(c.origin == "prefix" for c in out), 0
    while wanted > 0 and attempts < 1000 * max(sample, 1):
        attempts += 1
        nodes = random_down_set(model, rng)
        if nodes not in seen:
            seen.add(nodes)
            out.append(Candidate("random", nodes, None))
            wanted -= 1
    edges = model.edges()
    assert all(is_valid(edges, c.edge_nodes, model.input_name) for c in out)
    return out


def prefix_of(model: DagModel, edge_nodes: frozenset[str]) -> int | None:
    k = len(edge_nodes) - 1
    return k if model.prefix(k).edge_nodes == edge_nodes else None


# ----------------------------------------------------------------------------- measuring

class DagCase(Case):
    """One DAG model at one bandwidth: runs any candidate partition (by its index), keeps every
    report. Re-uses decision_quality.Case's measure and interleaved."""

    def __init__(self, model: DagModel, planner: DagPlanner, x: torch.Tensor, client: CloudClient, label: str,
                 bandwidth_mbps: float, edge_slowdown: float, cloud_pid: int, candidates: list[Candidate],
                 expected_top5: list[list]):
        # Case types its planner as a ChainPlanner; every method of Case that uses one is overridden here
        super().__init__(model, planner, x, client, label, bandwidth_mbps, edge_slowdown, cloud_pid)  # type: ignore[arg-type]
        self.candidates = candidates
        self.expected_top5 = expected_top5
        self.answers_ok = 0
        self.plans: list[Plan] = [planner.cost(model.partition(c.edge_nodes), Link(bandwidth_mbps))
                                  for c in candidates]

    def answer_matches(self, top5: list[list]) -> bool:
        return ([c for c, _ in top5] == [c for c, _ in self.expected_top5]
                and all(math.isclose(p, q, rel_tol=ANSWER_RTOL) for (_, p), (_, q) in zip(top5, self.expected_top5)))

    def run(self, i: int) -> Run:
        waits_before = (runqueue_wait_ms(os.getpid()), runqueue_wait_ms(self.cloud_pid))
        report = collaborative_inference(self.model, self.planner, self.x, self.client, Link(self.bandwidth_mbps),
                                         partition=self.plans[i].partition, edge_slowdown=self.edge_slowdown)
        if report.fallback:  # a local run timed as if it were collaborative: never
            raise SystemExit(f"error: {self.model.name}, partition {i}: the cloud failed: {report.fallback_reason}")
        edge_wait = runqueue_wait_ms(os.getpid()) - waits_before[0]
        cloud_wait = runqueue_wait_ms(self.cloud_pid) - waits_before[1]
        ok = self.answer_matches(report.top5)
        if not ok:
            log(f"    WRONG ANSWER at partition {i}: {report.top5} != {self.expected_top5}")
        self.answers_ok += ok
        self.runs, self.edge_runq_wait_ms, self.cloud_runq_wait_ms = (
            self.runs + 1, self.edge_runq_wait_ms + edge_wait, self.cloud_runq_wait_ms + cloud_wait)
        return Run(report, edge_wait, cloud_wait)

    def record(self, phase: str, i: int, runs: list[Run]) -> dict | None:
        candidate, plan = self.candidates[i], self.plans[i]
        measured = median_times(runs) if runs else {}
        ok = sum(self.answer_matches(r.report.top5) for r in runs)
        self.cut_rows.append({
            "model": self.model.name, "bandwidth": self.label, "bandwidth_mbps": self.bandwidth_mbps,
            "phase": phase, "candidate": i, "origin": candidate.origin, "edge_nodes": len(plan.edge_nodes) - 1,
            "prefix": "" if candidate.prefix is None else candidate.prefix, "tensors": len(plan.crossing),
            "crossing": ";".join(plan.crossing), "runs": len(runs), "answers_ok": ok if runs else "",
            "tensor_bytes": plan.transfer_bytes, "transfer_bytes": runs[0].report.transfer_bytes if runs else "",
            "predicted_edge_ms": round(plan.edge_ms, 3), "predicted_transfer_ms": round(plan.transfer_ms, 3),
            "predicted_cloud_ms": round(plan.cloud_ms, 3), "predicted_total_ms": round(plan.total_ms, 3),
            **{key: round(value, 3) for key, value in measured.items()}})
        return measured or None

    def search_order(self, chosen: int) -> tuple[list[int], set[int]]:
        """Candidates in ascending predicted total; cloud-only, edge-only and the chosen always measured."""
        return sorted(range(len(self.candidates)), key=lambda i: (self.plans[i].total_ms, i)), {0, 1, chosen}

    def transfer_only_ms(self, i: int) -> float:
        return send_ms(self.plans[i].transfer_bytes, self.bandwidth_mbps)

    def describe(self, i: int) -> str:
        plan = self.plans[i]
        return (f"{self.candidates[i].origin:>10} {len(plan.edge_nodes) - 1:>3} nodes, {len(plan.crossing)} "
                f"tensor(s), {plan.transfer_bytes:>8} B: predicted {plan.total_ms:9.1f}")


def run_case(model: DagModel, planner: DagPlanner, x: torch.Tensor, cloud: LocalCloud, label: str, repeats: int,
             edge_slowdown: float, candidates: list[Candidate], expected_top5: list[list]) -> tuple[dict, list[dict]]:
    t_case = time.perf_counter()
    bw = parse_bandwidth(label)
    chosen_nodes = planner.best(Link(bw)).edge_nodes
    candidates = list(candidates)
    chosen = next((i for i, c in enumerate(candidates) if c.edge_nodes == chosen_nodes), None)
    if chosen is None:
        candidates.append(Candidate("chosen", chosen_nodes, prefix_of(model, chosen_nodes)))
        chosen = len(candidates) - 1
    with CloudClient(HOST, cloud.port, pacer=LinkPacer(bw)) as client:
        client.connect()
        client.probe(8 * 1024)  # one paced round trip on this connection before timing
        case = DagCase(model, planner, x, client, label, bw, edge_slowdown, cloud.process.pid, candidates,
                       expected_top5)
        measured, skipped = case.oracle_search(chosen, repeats)
        oracle = min(measured, key=lambda i: (measured[i], i))
        chosen_ms, oracle_ms = case.interleaved(chosen, oracle, repeats)
    ratio = 1.0 if chosen == oracle else chosen_ms / oracle_ms
    plan, oracle_plan = case.plans[chosen], case.plans[oracle]
    edge_only, cloud_only = measured[1], measured[0]
    row = {"model": model.name, "bandwidth": label, "bandwidth_mbps": bw, "nodes": len(model),
           "edge_slowdown": edge_slowdown, "candidates": len(candidates), "chosen_origin": candidates[chosen].origin,
           "chosen_edge_nodes": len(plan.edge_nodes) - 1, "chosen_prefix": _blank(candidates[chosen].prefix),
           "chosen_tensors": len(plan.crossing), "chosen_crossing": ";".join(plan.crossing),
           "chosen_bytes": plan.transfer_bytes, "oracle_origin": candidates[oracle].origin,
           "oracle_edge_nodes": len(oracle_plan.edge_nodes) - 1, "oracle_prefix": _blank(candidates[oracle].prefix),
           "oracle_tensors": len(oracle_plan.crossing), "oracle_crossing": ";".join(oracle_plan.crossing),
           "chosen_ms": round(chosen_ms, 2), "oracle_ms": round(oracle_ms, 2), "ratio": round(ratio, 4),
           "chosen_search_ms": round(measured[chosen], 2), "search_ratio": round(measured[chosen] / measured[oracle], 4),
           "edge_only_ms": round(edge_only, 2), "cloud_only_ms": round(cloud_only, 2),
           "speedup_vs_edge": round(edge_only / measured[chosen], 3),
           "speedup_vs_cloud": round(cloud_only / measured[chosen], 3),
           "predicted_chosen_ms": round(plan.total_ms, 2),
           "predicted_error_pct": round(100 * (plan.total_ms - chosen_ms) / chosen_ms, 1),
           "measured": len(measured), "skipped": len(skipped), "runs": case.runs, "answers_ok": case.answers_ok,
           "edge_runq_wait_ms": round(case.edge_runq_wait_ms, 1),
           "cloud_runq_wait_ms": round(case.cloud_runq_wait_ms, 1), "case_s": round(time.perf_counter() - t_case, 1)}
    return row, case.cut_rows


def _blank(value):
    return "" if value is None else value


def describe(edge_nodes: int, prefix, tensors: int, nodes: int) -> str:
    where = f"first {prefix}" if prefix != "" else f"{edge_nodes} (not a prefix)"
    if edge_nodes == nodes:
        return "all on the edge"
    if edge_nodes == 0:
        return "all on the cloud"
    return f"{where}/{nodes} nodes, {tensors} tensor{'s' if tensors != 1 else ''}"


HEADER = (f"{'model':<10} {'bw':>5} {'chosen partition':<34} {'oracle partition':<34} {'chosen ms':>10} "
          f"{'oracle ms':>10} {'ratio':>6} {'vs edge':>8} {'vs cloud':>8} {'pred ms':>9} {'err':>7} "
          f"{'meas':>5} {'ok':>7} {'s':>5}")


def print_row(row: dict) -> None:
    n = row["nodes"]
    print(f"{row['model']:<10} {row['bandwidth']:>5} "
          f"{describe(row['chosen_edge_nodes'], row['chosen_prefix'], row['chosen_tensors'], n):<34} "
          f"{describe(row['oracle_edge_nodes'], row['oracle_prefix'], row['oracle_tensors'], n):<34} "
          f"{row['chosen_ms']:>10.1f} {row['oracle_ms']:>10.1f} {row['ratio']:>6.3f} "
          f"{row['speedup_vs_edge']:>7.2f}x {row['speedup_vs_cloud']:>7.2f}x {row['predicted_chosen_ms']:>9.1f} "
          f"{row['predicted_error_pct']:>+6.1f}% {row['measured']:>2}/{row['candidates']:<2} "
          f"{row['answers_ok']:>3}/{row['runs']:<3} {row['case_s']:>5.0f}", flush=True)


def bandwidth_label(text: str) -> str:
    """argparse type: a bandwidth the link understands, kept as written (3g, lte, wifi, Mbit/s)."""
    bandwidth_arg(text)
    return text


def count_arg(minimum: int):
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return int(text)
    return parse


def parse_args(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=DAG_MODEL_NAMES, default=list(DAG_MODEL_NAMES))
    p.add_argument("--bandwidths", nargs="+", type=bandwidth_label, default=DEFAULT_BANDWIDTHS,
                   metavar="MBPS|3g|lte|wifi", help="uplinks to study (default: %(default)s)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=10.0, metavar="F",
                   help="emulate an edge device F times slower than this machine (default %(default)g)")
    p.add_argument("--repeats", type=count_arg(1), default=3, metavar="N",
                   help="runs of each measured partition, their median reported (default %(default)s)")
    p.add_argument("--sample", type=count_arg(0), default=DEFAULT_SAMPLE, metavar="N",
                   help="other valid partitions per model beyond the boundaries (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample (default %(default)s)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "dag_decision_quality.csv")
    return p.parse_args(argv)


@contextmanager
def pinned_cloud(models: list[str]):
    """A 1-thread cloud child on core 1, this process (the edge) on core 0 at 1 torch thread, for
    the duration; yields (cloud, what the pinning is). Restores this process's cores and threads."""
    own_cores, own_threads = os.sched_getaffinity(0), torch.get_num_threads()
    pin = can_pin()
    torch.set_num_threads(1)
    try:
        with LocalCloud(models, threads=1) as cloud:
            if pin:  # the cloud's threads first: this process's own pinning must not rub off on them
                pin_threads(cloud.process.pid, {CLOUD_CORE})
                pin_threads(os.getpid(), {EDGE_CORE})
            yield cloud, (f"edge (this process) on core {EDGE_CORE}, cloud (child) on core {CLOUD_CORE}" if pin
                          else f"none: cores {sorted(own_cores)} do not include {EDGE_CORE} and {CLOUD_CORE}")
    finally:
        if pin:
            pin_threads(os.getpid(), own_cores)
        torch.set_num_threads(own_threads)


def summarize(rows: list[dict]) -> dict:
    worst = max(rows, key=lambda r: r["ratio"])
    return {"geomean_ratio": geomean([r["ratio"] for r in rows]), "worst_ratio": worst["ratio"],
            "worst_case": f"{worst['model']} at {worst['bandwidth']}",
            "geomean_speedup_vs_edge": geomean([r["speedup_vs_edge"] for r in rows]),
            "geomean_speedup_vs_cloud": geomean([r["speedup_vs_cloud"] for r in rows]),
            "chosen_is_oracle": f"{sum(r['ratio'] == 1.0 and r['search_ratio'] == 1.0 for r in rows)}/{len(rows)}",
            "answers_ok": f"{sum(r['answers_ok'] for r in rows)}/{sum(r['runs'] for r in rows)}"}


def print_summary(s: dict, run_s: float) -> None:
    verdict = lambda value, target: "met" if value <= target else "MISSED"  # noqa: E731
    print(f"chosen = oracle in {s['chosen_is_oracle']} cases; answers equal to local inference in "
          f"{s['answers_ok']} runs")
    print(f"chosen/oracle: geomean {s['geomean_ratio']:.3f} ({verdict(s['geomean_ratio'], TARGET_GEOMEAN_RATIO)} "
          f"<= {TARGET_GEOMEAN_RATIO}), worst {s['worst_ratio']:.3f} at {s['worst_case']} "
          f"({verdict(s['worst_ratio'], TARGET_WORST_RATIO)} <= {TARGET_WORST_RATIO})")
    print(f"chosen partition vs edge-only {s['geomean_speedup_vs_edge']:.2f}x, vs cloud-only "
          f"{s['geomean_speedup_vs_cloud']:.2f}x (geomeans); {run_s:.0f} s")


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    partitions_out = args.out.with_name(f"{args.out.stem}_partitions.csv")
    edge_predictor = LatencyPredictor.load("edge")
    x = fixed_input()
    models = {name: get_dag_model(name) for name in args.models}
    for model in models.values():
        _ = model.fingerprint  # hashed once, before any clock starts
    setup = dict(host=HOST, edge_threads=1, cloud_threads=1, edge_slowdown=args.edge_slowdown,
                 cloud="cloud_api.py subprocess --threads 1",
                 predictors="edge (1-thread) profile for both sides, the edge's x edge_slowdown",
                 rtt_ms=0, repeats=args.repeats, sample=args.sample, seed=args.seed, warmup_runs=WARMUP_RUNS,
                 link="net.emulation.link.LinkPacer", loadavg_before=" ".join(f"{v:.2f}" for v in os.getloadavg()))
    rows, partition_rows = [], []
    t_start = time.perf_counter()
    with pinned_cloud(args.models) as (cloud, pinning):
        setup["pinning"] = pinning
        print(f"DAG decision quality: edge = this process at 1 thread, {args.edge_slowdown:g}x slower (emulated); "
              f"cloud = child at 1 thread; pinning: {pinning}; candidates: cloud-only, edge-only, single-tensor "
              f"boundaries, {args.sample} sampled (seed {args.seed}), the chosen; {args.repeats} run(s) per median")
        print(HEADER, flush=True)
        for name, model in models.items():
            planner = DagPlanner(model, edge_predictor, edge_predictor, edge_slowdown=args.edge_slowdown)
            candidates = model_candidates(model, args.sample, args.seed)
            log(f"{name}: {len(candidates)} candidate partitions; warming up both sides")
            warm_up(model, x, cloud.port)
            with torch.no_grad():
                model.run_edge(x, model.prefix(model.num_units))  # the op-by-op path the edge times
                expected_top5 = top_k(model(x.clone()))
            for label in args.bandwidths:
                log(f"  {name} at {label} ({parse_bandwidth(label):g} Mbit/s), "
                    f"{time.perf_counter() - t_start:.0f} s in")
                row, per_partition = run_case(model, planner, x, cloud, label, args.repeats, args.edge_slowdown,
                                              candidates, expected_top5)
                rows.append(row)
                partition_rows.extend(per_partition)
                print_row(row)
    run_s = time.perf_counter() - t_start
    summary = summarize(rows)
    print_summary(summary, run_s)
    meta = provenance(**setup, loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()), run_s=round(run_s),
                      **{k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()})
    for path, table, columns in ((args.out, rows, COLUMNS), (partitions_out, partition_rows, PARTITION_COLUMNS)):
        write_csv_with_provenance(path, table, columns, meta)
    print(f"wrote {args.out} and {partitions_out}")
    return rows


if __name__ == "__main__":
    main()
