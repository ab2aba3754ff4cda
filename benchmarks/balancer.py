"""Throughput and latency through HAProxy (deploy/haproxy.cfg) against a direct connection.

  python -m benchmarks.balancer [--clients 8] [--requests 30] [--model alex_net] [--cut 0]

Three set-ups in one run, each cloud process at 1 torch thread so that two of them can use this
machine's two cores: a direct connection to one cloud; HAProxy in front of that one cloud (both
of the config's server lines point at it); HAProxy in front of two clouds. Every answer is
checked against local inference (benchmarks.cloud_concurrency does the clients and the checks).
Needs Debian's haproxy.
"""
from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from benchmarks.cloud_concurrency import HOST, Workload, run_clients
from models import MODEL_NAMES
from net.cloud.local import LocalCloud
from utils.provenance import REPO_ROOT, provenance, write_csv_with_provenance

HEALTHY_AFTER_S = 1.5  # the config's health checks: rise 2 x inter 500 ms


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class Balancer:
    """haproxy -f deploy/haproxy.cfg in the foreground, in front of `ports`."""

    def __init__(self, ports: list[int]):
        self.port = free_port()
        first, second = ports[0], ports[-1]
        env = dict(os.environ, NS_LISTEN=f"{HOST}:{self.port}", NS_CLOUD1=f"{HOST}:{first}",
                   NS_CLOUD2=f"{HOST}:{second}")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(REPO_ROOT / "deploy" / "haproxy.cfg")],
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(HEALTHY_AFTER_S)

    def __enter__(self) -> Balancer:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=30)
    p.add_argument("--model", choices=MODEL_NAMES, default="alex_net")
    p.add_argument("--cut", type=int, default=0)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "balancer.csv")
    args = p.parse_args(argv)
    if shutil.which("haproxy") is None:
        raise SystemExit("error: haproxy is not installed (Debian: apt-get install haproxy)")
    torch.set_num_threads(1)
    work = Workload(args.model, args.cut)
    rows = []
    print(f"{args.clients} edges x {args.requests} requests, {args.model} at cut {args.cut}, clouds at 1 thread")
    print(f"{'set-up':<22} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'wrong':>5}")
    with LocalCloud([args.model], threads=1) as one, LocalCloud([args.model], threads=1) as two:
        setups = [("direct, 1 cloud", None, [one.port]), ("haproxy, 1 backend", True, [one.port]),
                  ("haproxy, 2 backends", True, [one.port, two.port])]
        for name, balanced, ports in setups:
            if balanced:
                with Balancer(ports) as balancer:
                    row = run_clients(balancer.port, work, args.clients, args.requests)
            else:
                row = run_clients(ports[0], work, args.clients, args.requests)
            row = {"setup": name, **row}
            rows.append(row)
            print(f"{name:<22} {row['throughput_rps']:>7.1f} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f} "
                  f"{row['errors']:>6} {row['wrong']:>5}")
    write_csv_with_provenance(args.out, rows, list(rows[0]),
                              provenance(cloud_threads=1, clients=args.clients, requests=args.requests))
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
