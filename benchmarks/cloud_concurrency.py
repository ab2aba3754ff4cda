"""Cloud throughput and tail latency with many concurrent edge clients.

  python -m benchmarks.cloud_concurrency [--clients 1 4 16] [--requests N] [--runs R] [--model alex_net] [--cut K]

One cloud, `cloud_api.py -p 0 --preload MODEL` in its own process on a free loopback port
(without a token: NEUROSURGEON_TOKEN is removed from its environment), stopped at the end. For each
client count C, C threads of this process each hold one
`CloudClient` (one persistent connection) and send --requests `infer` requests back to back at
cut K (default 0: the cloud runs the whole model), with want_logits. Each client first says
hello and sends one untimed warm-up request; then all start together.

Reported per C: throughput (requests/s over the wall time from the common start to the last
reply), p50 / p99 / max latency of one request (the client's wall time around `infer`), the
median of the cloud's own compute time, errors (requests that raised) and wrong answers. Every
reply is checked against local inference of the same input in this process: top-5 indices
identical and probabilities within 1e-5 relative (the cloud runs at another thread count), and
the returned logits give the same top-5 indices. Errors and wrong answers must be 0.

Both processes share this machine's cores (edge threads mostly wait on sockets here).

With --runs R the whole measurement is made R times, each against a new cloud process: the CSV
has per client count the median over the runs of each figure, with the least and greatest run's
throughput, p50 and p99 beside (`*_min`, `*_max`), `completed` the fewest any run completed and
errors and wrong answers summed; NAME_runs.csv has every run's own rows. One run on this kind of
VM says little: the same set-up varies by tens of per cent from run to run.
"""
from __future__ import annotations

import argparse
import math
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from models import MODEL_NAMES, get_dnn_model
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from utils.classes import top_k
from utils.provenance import provenance, write_csv_with_provenance

HOST = "127.0.0.1"
BARRIER_TIMEOUT_S = 120.0  # every client connected and warmed up before the timed requests
NUM_INPUTS = 8  # distinct inputs, used in turn by every client
SEED = 0
REL_TOL = 1e-5


class Workload:
    """The tensors the edge sends at cut k and the answers local inference gives for them."""

    def __init__(self, model_name: str, cut: int, num_inputs: int = NUM_INPUTS):
        model = get_dnn_model(model_name)
        if not 0 <= cut < len(model):
            raise SystemExit(f"error: --cut {cut} is outside 0..{len(model) - 1} for {model_name}")
        self.model_name, self.cut, self.fingerprint = model_name, cut, model.fingerprint
        g = torch.Generator().manual_seed(SEED)
        self.sent, self.expected = [], []
        with torch.no_grad():
            for _ in range(num_inputs):
                x = torch.randn(model.input_shape, generator=g)
                self.sent.append(model[:cut](x).contiguous())
                self.expected.append(top_k(model(x)))
        self.nbytes = self.sent[0].numel() * 4

    def check(self, i: int, reply) -> str | None:
        """None when the reply matches local inference of input i, else what differs."""
        expected = self.expected[i]
        if [c for c, _ in reply.top5] != [c for c, _ in expected]:
            return f"top-5 {reply.top5} != local {expected}"
        for (_, got), (_, want) in zip(reply.top5, expected):
            if not math.isclose(got, want, rel_tol=REL_TOL):
                return f"probability {got} != local {want} (rel. tolerance {REL_TOL})"
        if reply.logits is None or [c for c, _ in top_k(reply.logits)] != [c for c, _ in expected]:
            return "the returned logits do not give the local top-5"
        return None


def run_clients(port: int, work: Workload, clients: int, requests: int) -> dict:
    """`clients` threads, one connection each, `requests` timed requests each; the summary."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    cloud_ms: list[list[float]] = [[] for _ in range(clients)]
    errors, wrong, messages = [0] * clients, [0] * clients, []
    start = threading.Barrier(clients + 1)
    done = [0.0] * clients

    def one(c: int, client: CloudClient, i: int, timed: bool) -> None:
        t0 = time.perf_counter()
        try:
            reply = client.infer(work.model_name, work.fingerprint, work.cut, work.sent[i], want_logits=True)
        except Exception as e:  # CloudUnavailable, CloudRefused, or a bug: counted, never hidden
            errors[c] += 1
            messages.append(f"client {c}: {type(e).__name__}: {e}")
            return
        elapsed_ms = (time.perf_counter() - t0) * 1e3
        problem = work.check(i, reply)
        if problem:
            wrong[c] += 1
            messages.append(f"client {c}, input {i}: {problem}")
        if timed:
            latencies[c].append(elapsed_ms)
            cloud_ms[c].append(reply.cloud_ms)

    def client_thread(c: int) -> None:
        try:
            run_one_client(c)
        except BaseException as e:  # never leave the others waiting at the barrier
            errors[c] += 1
            messages.append(f"client {c}: {type(e).__name__}: {e}")
            start.abort()

    def run_one_client(c: int) -> None:
        with CloudClient(HOST, port, weights=(work.model_name, work.fingerprint)) as client:
            try:
                client.connect()
            except Exception as e:
                errors[c] += 1
                messages.append(f"client {c}: {type(e).__name__}: {e}")
            one(c, client, c % len(work.sent), timed=False)  # warm-up, checked, untimed
            try:
                start.wait(timeout=BARRIER_TIMEOUT_S)
            except threading.BrokenBarrierError:
                return
            for j in range(requests):
                one(c, client, (c + j) % len(work.sent), timed=True)
            done[c] = time.perf_counter()

    threads = [threading.Thread(target=client_thread, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    try:
        start.wait(timeout=BARRIER_TIMEOUT_S)
    except threading.BrokenBarrierError:
        pass  # a client failed before the start: its error is counted below
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall_s = max(max(done) - t0, 1e-9)
    all_lat = [ms for per in latencies for ms in per]
    all_cloud = [ms for per in cloud_ms for ms in per]
    def pct(v, q):
        return round(float(np.percentile(v, q)), 2) if v else float("nan")
    return {"model": work.model_name, "cut": work.cut, "request_bytes": work.nbytes, "clients": clients,
            "requests": clients * requests, "completed": len(all_lat), "wall_s": round(wall_s, 3),
            "throughput_rps": round(len(all_lat) / wall_s, 2), "p50_ms": pct(all_lat, 50),
            "p99_ms": pct(all_lat, 99), "max_ms": pct(all_lat, 100), "cloud_p50_ms": pct(all_cloud, 50),
            "errors": sum(errors), "wrong": sum(wrong), "first_problem": messages[0] if messages else ""}


SPREAD = ("throughput_rps", "p50_ms", "p99_ms")  # reported with their least and greatest run


def across_runs(per_run: list[dict], clients: list[int]) -> list[dict]:
    """Per client count: each figure's median over the runs, the spread of SPREAD beside, the
    fewest completed, errors and wrong answers summed, the first problem any run met."""
    rows = []
    for c in clients:
        mine = [r for r in per_run if r["clients"] == c]
        row = {k: mine[0][k] for k in ("model", "cut", "request_bytes", "clients", "requests")}
        row["runs"] = len(mine)
        row["completed"] = min(r["completed"] for r in mine)
        for key in ("wall_s", "throughput_rps", "p50_ms", "p99_ms", "max_ms", "cloud_p50_ms"):
            row[key] = round(statistics.median(r[key] for r in mine), 3 if key == "wall_s" else 2)
        for key in SPREAD:
            row[f"{key}_min"], row[f"{key}_max"] = min(r[key] for r in mine), max(r[key] for r in mine)
        row["errors"], row["wrong"] = sum(r["errors"] for r in mine), sum(r["wrong"] for r in mine)
        row["first_problem"] = next((r["first_problem"] for r in mine if r["first_problem"]), "")
        rows.append(row)
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", nargs="+", type=int, default=[1, 4, 16], help="concurrent edge clients")
    p.add_argument("--requests", type=int, default=50, help="timed requests per client (default %(default)s)")
    p.add_argument("--model", choices=MODEL_NAMES, default="alex_net")
    p.add_argument("--cut", type=int, default=0, help="cut k: the edge ran units 1..k (default 0, cloud-only)")
    p.add_argument("--cloud-threads", type=int, default=None, help="the cloud's torch threads (default: its own)")
    p.add_argument("--runs", type=int, default=1,
                   help="whole measurements, each with a new cloud process; the CSV has their medians (default 1)")
    p.add_argument("--out", type=Path, default=None, help="CSV path (default: runs/benchmarks/cloud_concurrency_MODEL.csv)")
    args = p.parse_args(argv)
    if args.requests < 1 or min(args.clients) < 1 or args.runs < 1:
        p.error("--clients, --requests and --runs must be at least 1")
    if args.out is None:
        args.out = RESULTS_DIR / f"cloud_concurrency_{args.model}.csv"
    torch.set_num_threads(1)  # local reference inference; the edge threads themselves only wait
    work = Workload(args.model, args.cut)
    per_run: list[dict] = []
    for run in range(1, args.runs + 1):
        with LocalCloud([args.model], threads=args.cloud_threads) as cloud:
            print(f"run {run}/{args.runs}: {args.model} at cut {args.cut} ({work.nbytes} bytes a request), cloud on "
                  f"{HOST}:{cloud.port} with {cloud.threads} thread(s)")
            print(f"{'clients':>7} {'requests':>8} {'wall s':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'max ms':>8} {'cloud p50':>9} {'errors':>6} {'wrong':>5}")
            for clients in args.clients:
                row = run_clients(cloud.port, work, clients, args.requests)
                per_run.append({"run": run, **row})
                print(f"{clients:>7} {row['requests']:>8} {row['wall_s']:>7.2f} {row['throughput_rps']:>7.1f} "
                      f"{row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} {row['max_ms']:>8.1f} "
                      f"{row['cloud_p50_ms']:>9.1f} {row['errors']:>6} {row['wrong']:>5}")
                if row["first_problem"]:
                    print(f"        first problem: {row['first_problem']}")
            cloud_threads = cloud.threads
    rows = across_runs(per_run, args.clients)
    if args.runs > 1:
        for r in rows:
            print(f"{r['clients']:>7} clients over {args.runs} runs: {r['throughput_rps']:.1f} req/s "
                  f"[{r['throughput_rps_min']:.1f}-{r['throughput_rps_max']:.1f}], p50 {r['p50_ms']:.1f} ms "
                  f"[{r['p50_ms_min']:.1f}-{r['p50_ms_max']:.1f}], p99 {r['p99_ms']:.1f} ms "
                  f"[{r['p99_ms_min']:.1f}-{r['p99_ms_max']:.1f}]")
    meta = provenance(host=HOST, cloud="cloud_api.py subprocess, no token, a new one each run",
                      cloud_threads=cloud_threads, edge="threads of one process, one connection each",
                      local_reference_threads=1, requests_per_client=args.requests, warmup_per_client=1,
                      inputs=NUM_INPUTS, seed=SEED, runs=args.runs, statistic="median of the runs' figures")
    write_csv_with_provenance(args.out, rows, list(rows[0]), meta)
    runs_out = args.out.with_name(f"{args.out.stem}_runs.csv")
    write_csv_with_provenance(runs_out, per_run, list(per_run[0]), meta)
    print(f"wrote {args.out} and {runs_out}")
    bad = [r for r in rows if r["errors"] or r["wrong"] or r["completed"] != r["requests"]]
    if bad:
        raise SystemExit(f"error: {sum(r['errors'] for r in bad)} failed and {sum(r['wrong'] for r in bad)} "
                         f"wrong requests; first: {bad[0]['first_problem']}")
    return rows


if __name__ == "__main__":
    main()
