"""Predicted against measured whole-model (and prefix) latency, per model, per device role.

  python -m benchmarks.model_latency [--role edge|cloud] [--models ...] [--repeats N]

Measured with the thread count the role's profile was made with, each pass after a cache flush
(as the profile), median of --repeats. Prefix k = units 1..k, which is what the edge runs at cut k;
for the DAG models, the first k nodes of the traced order, run node by node as the edge runs them.
"""
from __future__ import annotations

import argparse
import statistics
import time
from itertools import accumulate
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from models import ALL_MODEL_NAMES, get_model
from predictor import LatencyPredictor, planner_for
from predictor.profiler import CacheFlusher
from utils.provenance import provenance, write_csv_with_provenance


@torch.no_grad()
def measure_prefixes_ms(model, repeats: int, flush: CacheFlusher) -> list[float]:
    """Median wall time (ms) from the input to the output of each unit k = 1..N, in real passes."""
    x = torch.randn(model.input_shape)
    clock = time.perf_counter
    runs = []
    for i in range(repeats + 1):  # one warm-up pass
        flush()
        t0 = clock()
        marks = []
        for _ in model.unit_outputs(x):
            marks.append((clock() - t0) * 1e3)
        if i:
            runs.append(marks)
    return [statistics.median(r[k] for r in runs) for k in range(model.num_units)]


def predicted_prefixes_ms(model, planner) -> list[tuple[str, float]]:
    """(label of unit or node k, predicted ms of prefix 1..k) for k = 1..N."""
    units = planner.unit_rows()
    return list(zip((u["label"] for u in units), accumulate(u["edge_ms"] for u in units)))


def run(role: str, models: list[str], repeats: int) -> list[dict]:
    predictor = LatencyPredictor.load(role)
    threads = int(predictor.meta.get("threads", 1))
    torch.set_num_threads(threads)
    flush = CacheFlusher()
    rows = []
    for name in models:
        model = get_model(name)
        planner = planner_for(model, predictor, predictor)
        measured = measure_prefixes_ms(model, repeats, flush)
        for k, (label, predicted) in enumerate(predicted_prefixes_ms(model, planner), start=1):
            rows.append({"role": role, "threads": threads, "model": name, "prefix_units": k,
                         "layer": label, "predicted_ms": round(predicted, 4),
                         "measured_ms": round(measured[k - 1], 4),
                         "error_pct": round(100 * (predicted - measured[k - 1]) / measured[k - 1], 2)})
    return rows


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--role", choices=("edge", "cloud"), default="edge")
    p.add_argument("--models", nargs="+", choices=ALL_MODEL_NAMES, default=list(ALL_MODEL_NAMES))
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--out", type=Path, default=None, help="CSV path (default runs/benchmarks/model_latency_ROLE.csv)")
    args = p.parse_args(argv)
    rows = run(args.role, args.models, args.repeats)
    print(f"whole-model latency, {args.role} predictors vs measured ({rows[0]['threads']} thread(s))")
    print(f"{'model':<11} {'units':>5} {'predicted ms':>13} {'measured ms':>12} {'error':>8} "
          f"{'worst prefix error':>19}")
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        whole = mine[-1]
        worst = max(mine, key=lambda r: abs(r["error_pct"]))
        print(f"{name:<11} {whole['prefix_units']:>5} {whole['predicted_ms']:>13.2f} "
              f"{whole['measured_ms']:>12.2f} {whole['error_pct']:>+7.1f}% "
              f"{worst['error_pct']:>+8.1f}% at k={worst['prefix_units']}")
    out = args.out or RESULTS_DIR / f"model_latency_{args.role}.csv"
    write_csv_with_provenance(out, rows, list(rows[0]), provenance(role=args.role,
                              threads=rows[0]["threads"], repeats=args.repeats))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
