"""What a wait costs the next computation on this machine: a model's forward pass at 1 thread,
warm (right after another) and as the first after an idle gap, and the page faults it took.

  python -m benchmarks.idle_penalty [--models efficient_net mobile_net alex_net] [--gaps 0.3 1 3]
                                    [--repeats 5] [--out CSV]

Why: an emulated edge F times slower used to wait (F - 1) x its compute after the work, and the
cloud idles while the edge computes and sends. On the VMs this project is measured on, the first
forward pass after an idle gap is several times slower than a warm one, growing with the gap, with
no page fault in the process: the cost is outside it (the hypervisor), so every part measured after
a wait is slower than the predictors (profiled warm, back to back) say. This measures its size per
model and gap: per repeat, sleep the gap, time one forward (cold), then one more (warm again).
The edge emulation in the decision-quality benchmarks repeats the work instead of waiting
(net.emulation.slowdown.run_slowed); the cloud's side still idles between requests.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR
from models import MODEL_NAMES, get_dnn_model
from utils.image import fixed_input
from utils.provenance import provenance, write_csv_with_provenance

COLUMNS = ["model", "gap_s", "repeats", "warm_ms", "cold_ms", "cold_min_ms", "cold_max_ms", "cold_over_warm",
           "after_cold_ms", "minor_faults_cold", "major_faults_cold"]


def _faults() -> tuple[int, int]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_majflt


@torch.no_grad()
def _forward_ms(model, x: torch.Tensor) -> float:
    t0 = time.perf_counter()
    model.forward_whole(x)
    return (time.perf_counter() - t0) * 1e3


@torch.no_grad()
def measure(name: str, gaps: list[float], repeats: int) -> list[dict]:
    model = get_dnn_model(name)
    x = fixed_input(model.input_shape)
    for _ in range(5):
        _forward_ms(model, x)
    warm = statistics.median(_forward_ms(model, x) for _ in range(2 * repeats + 1))
    rows = []
    for gap in gaps:
        cold, after, minor, major = [], [], [], []
        for _ in range(repeats):
            time.sleep(gap)
            f0 = _faults()
            cold.append(_forward_ms(model, x))
            f1 = _faults()
            minor.append(f1[0] - f0[0])
            major.append(f1[1] - f0[1])
            after.append(_forward_ms(model, x))
        rows.append({"model": name, "gap_s": gap, "repeats": repeats, "warm_ms": round(warm, 2),
                     "cold_ms": round(statistics.median(cold), 2), "cold_min_ms": round(min(cold), 2),
                     "cold_max_ms": round(max(cold), 2), "cold_over_warm": round(statistics.median(cold) / warm, 2),
                     "after_cold_ms": round(statistics.median(after), 2),
                     "minor_faults_cold": statistics.median(minor), "major_faults_cold": statistics.median(major)})
    return rows


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=["efficient_net", "mobile_net", "alex_net"])
    p.add_argument("--gaps", nargs="+", type=float, default=[0.0, 0.3, 1.0, 3.0], metavar="SECONDS")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "idle_penalty.csv")
    args = p.parse_args(argv)
    if args.repeats < 1 or any(g < 0 for g in args.gaps):
        p.error("--repeats must be >= 1 and every gap >= 0 s")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = [row for name in args.models for row in measure(name, args.gaps, args.repeats)]
    finally:
        torch.set_num_threads(threads)
    print(f"{'model':<14} {'gap s':>6} {'warm ms':>8} {'first after the gap ms (min-max)':>34} {'x warm':>7} "
          f"{'next ms':>8} {'faults':>7}")
    for r in rows:
        print(f"{r['model']:<14} {r['gap_s']:>6g} {r['warm_ms']:>8.1f} {r['cold_ms']:>14.1f} "
              f"({r['cold_min_ms']:.1f}-{r['cold_max_ms']:.1f}){'':>6} {r['cold_over_warm']:>6.2f}x "
              f"{r['after_cold_ms']:>8.1f} {r['minor_faults_cold']:>3g}/{r['major_faults_cold']:g}")
    write_csv_with_provenance(args.out, rows, COLUMNS, provenance(threads=1, repeats=args.repeats,
                                                                   method="sleep the gap, time one forward, then one more"))
    print(f"wrote {args.out}")
    return rows


if __name__ == "__main__":
    main()
