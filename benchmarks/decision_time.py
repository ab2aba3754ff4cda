"""Decision time of the partition search against the original implementation's method.

  python -m benchmarks.decision_time [--models ...] [--naive-repeats N]

Ours: per-unit predictions and byte counts are computed once per model (`Planner`, reported as
the one-off set-up), then each decision scans N+1 precomputed numbers. Naive (the original's
method): for every cut, run the edge sub-model forward on the input to learn the size of the
tensor it would send, then add up the same predictions. Both at 1 thread, in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from models import MODEL_NAMES, get_dnn_model, model_partition
from predictor import LatencyPredictor, Planner, transfer_ms
from utils.provenance import provenance, write_csv_with_provenance

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BANDWIDTH_MBPS = 5.85  # LTE; the decision's cost does not depend on the figure


@torch.no_grad()
def naive_best_cut(model, planner: Planner, x: torch.Tensor, bandwidth_mbps: float) -> int:
    n = len(model)
    best_k, best_ms = n, planner.edge_prefix_ms[n]
    for k in range(n):
        edge, _ = model_partition(model, k)
        nbytes = edge(x.clone()).numel() * 4
        total = planner.edge_prefix_ms[k] + transfer_ms(nbytes, bandwidth_mbps) + planner.cloud_suffix_ms[k]
        if total < best_ms:
            best_k, best_ms = k, total
    return best_k


def time_calls_us(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    p.add_argument("--repeats", type=int, default=2001, help="timed decisions of ours per model")
    p.add_argument("--naive-repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "decision_time.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    rows = []
    print(f"{'model':<11} {'units':>5} {'set-up ms':>10} {'ours us':>9} {'naive ms':>10} {'speed-up':>10}")
    for name in args.models:
        model = get_dnn_model(name)
        t0 = time.perf_counter()
        planner = Planner.for_model(model, edge, cloud)
        setup_ms = (time.perf_counter() - t0) * 1e3
        x = torch.randn(model.input_shape)
        ours_us = time_calls_us(lambda: planner.best_cut_point(BANDWIDTH_MBPS), args.repeats)
        naive_us = time_calls_us(lambda: naive_best_cut(model, planner, x, BANDWIDTH_MBPS),
                                 args.naive_repeats)
        assert naive_best_cut(model, planner, x, BANDWIDTH_MBPS) == planner.best_cut_point(BANDWIDTH_MBPS)
        row = {"model": name, "units": len(model), "setup_ms": round(setup_ms, 2),
               "ours_us": round(ours_us, 2), "naive_ms": round(naive_us / 1e3, 2),
               "speedup": round(naive_us / ours_us)}
        rows.append(row)
        print(f"{name:<11} {row['units']:>5} {row['setup_ms']:>10.1f} {row['ours_us']:>9.1f} "
              f"{row['naive_ms']:>10.1f} {row['speedup']:>9}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_csv_with_provenance(args.out, rows, list(rows[0]),
                              provenance(threads=1, repeats=args.repeats, naive_repeats=args.naive_repeats))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
