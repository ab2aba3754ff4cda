"""Decision time of the partition search against the original implementation's method.

  python -m benchmarks.decision_time [--models ...] [--naive-repeats N]

Chain models. Ours: per-unit predictions and byte counts are computed once per model
(`ChainPlanner`, reported as the one-off set-up), then each decision scans N+1 precomputed numbers.
Naive (the original's method): for every cut, run the edge sub-model forward on the input to
learn the size of the tensor it would send, then add up the same predictions.

DAG models. Ours: the min-cut graph is built once (`DagPlanner`, the set-up), each decision
refills its capacities and runs SciPy's compiled maximum flow. Baselines, both networkx's maximum
flow (pure Python) on the same graph: `baseline_ms` builds the graph anew for each decision, as a
search that rebuilds its graph per request would; `cached_baseline_ms` builds it once and only
rewrites its capacities per decision, as anyone using networkx for this would. All must find
cuts of the same cost.
`auto_us`: ours again with `--codec auto`'s exact codecs and scikit-learn's china.jpg in hand (a
model that takes no image: its tensor codecs only), `auto_codecs` the codecs weighed; the image's
coded sizes are measured once, at configuration, not per decision.
All at 1 thread, in the same run.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import networkx as nx
import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from models import ALL_MODEL_NAMES, DAG_MODEL_NAMES, get_dnn_model, model_partition
from models.dag import get_dag_model
from models.weights import preprocessing
from net.wire.codecs import ImageSource
from predictor import LatencyPredictor, Link, send_ms
from predictor.codec_profile import sample_photo_paths
from predictor.planner import ChainPlanner, DagPlanner, Planner
from predictor.planner.dag_cut import DagCutSearch
from utils.provenance import provenance, write_csv_with_provenance

BANDWIDTH_MBPS = 5.85  # LTE; the decision's cost does not depend on the figure


@torch.no_grad()
def naive_best_cut(model, planner: ChainPlanner, x: torch.Tensor, bandwidth_mbps: float) -> int:
    n = len(model)
    best_k, best_ms = n, planner.edge_prefix_ms[n]
    for k in range(n):
        edge, _ = model_partition(model, k)
        nbytes = edge(x.clone()).numel() * 4
        total = planner.edge_prefix_ms[k] + send_ms(nbytes, bandwidth_mbps) + planner.cloud_suffix_ms[k]
        if total < best_ms:
            best_k, best_ms = k, total
    return best_k


def networkx_cut_ms(search: DagCutSearch, bandwidth_mbps: float) -> float:
    """The baseline: build the same graph in networkx and cut it; the minimum cut's cost."""
    costs = search.arc_costs(bandwidth_mbps, 1.0, (1.0, 1.0, 1.0))
    graph = nx.DiGraph()
    for u, v, cost in zip(search.tails.tolist(), search.heads.tolist(), costs.tolist()):
        if cost == float("inf"):
            graph.add_edge(u, v)  # no capacity attribute: infinite to networkx
        else:
            graph.add_edge(u, v, capacity=cost)
    return nx.maximum_flow_value(graph, 0, 1)


class CachedNetworkxCut:
    """The fair networkx baseline: the graph built once, its capacities rewritten per decision."""

    def __init__(self, search: DagCutSearch):
        self.search = search
        self.graph = nx.DiGraph()
        self.arcs = list(zip(search.tails.tolist(), search.heads.tolist()))
        self.graph.add_edges_from(self.arcs)

    def __call__(self, bandwidth_mbps: float) -> float:
        costs = self.search.arc_costs(bandwidth_mbps, 1.0, (1.0, 1.0, 1.0))
        adj = self.graph.adj
        for (u, v), cost in zip(self.arcs, costs.tolist()):
            if cost == float("inf"):
                adj[u][v].pop("capacity", None)  # no capacity attribute: infinite to networkx
            else:
                adj[u][v]["capacity"] = cost
        return nx.maximum_flow_value(self.graph, 0, 1)


def time_calls_us(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(samples)


def auto_decision_us(planner: Planner, name: str, repeats: int) -> tuple[float, int]:
    """(µs per decision, codecs weighed) with auto's exact codecs, the sample photo in hand."""
    photo = ImageSource.from_path(sample_photo_paths()[0]).with_preprocess(preprocessing(name))
    planner.use_codecs("auto", 0.0, photo if photo.input_codecs(tuple(planner.model.input_shape)) else None)
    link = Link(BANDWIDTH_MBPS)
    try:
        return time_calls_us(lambda: planner.best(link), repeats), len(planner.codecs.allowed)
    finally:
        planner.use_codecs("none")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=ALL_MODEL_NAMES, default=list(ALL_MODEL_NAMES))
    p.add_argument("--repeats", type=int, default=2001, help="timed decisions of ours per model")
    p.add_argument("--naive-repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "decision_time.csv")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    rows = []
    print(f"{'model':<11} {'units':>5} {'set-up ms':>10} {'ours us':>9} {'baseline ms':>12} {'speed-up':>10}  baseline")
    for name in args.models:
        row = (time_dag if name in DAG_MODEL_NAMES else time_chain)(name, edge, cloud, args)
        rows.append(row)
        cached = f"; networkx on a cached graph {row['cached_baseline_ms']} ms ({row['speedup_vs_cached']}x)" \
            if row["cached_baseline_ms"] != "" else ""
        print(f"{name:<11} {row['units']:>5} {row['setup_ms']:>10.1f} {row['ours_us']:>9.1f} "
              f"{row['baseline_ms']:>12.1f} {row['speedup']:>9}x  {row['baseline']}{cached}; with auto "
              f"({row['auto_codecs']} codecs) {row['auto_us']} us")
    write_csv_with_provenance(args.out, rows, list(rows[0]),
                              provenance(threads=1, repeats=args.repeats, naive_repeats=args.naive_repeats))
    print(f"wrote {args.out}")


def time_chain(name: str, edge, cloud, args) -> dict:
    model = get_dnn_model(name)
    t0 = time.perf_counter()
    planner = ChainPlanner(model, edge, cloud)
    setup_ms = (time.perf_counter() - t0) * 1e3
    x = torch.randn(model.input_shape)
    link = Link(BANDWIDTH_MBPS)
    ours_us = time_calls_us(lambda: planner.best(link), args.repeats)
    naive_us = time_calls_us(lambda: naive_best_cut(model, planner, x, BANDWIDTH_MBPS), args.naive_repeats)
    assert naive_best_cut(model, planner, x, BANDWIDTH_MBPS) == planner.best(link).cut_point
    auto_us, auto_codecs = auto_decision_us(planner, name, args.repeats)
    return {"model": name, "units": len(model), "setup_ms": round(setup_ms, 2), "ours_us": round(ours_us, 2),
            "baseline_ms": round(naive_us / 1e3, 2), "speedup": round(naive_us / ours_us),
            "baseline": "a forward pass per cut (the original)", "cached_baseline_ms": "", "speedup_vs_cached": "",
            "auto_us": round(auto_us, 2), "auto_codecs": auto_codecs}


def time_dag(name: str, edge, cloud, args) -> dict:
    model = get_dag_model(name)
    t0 = time.perf_counter()
    planner = DagPlanner(model, edge, cloud)
    setup_ms = (time.perf_counter() - t0) * 1e3
    repeats = max(args.repeats // 10, 1)  # a max-flow is ~100x a chain scan: fewer repeats, same time
    link = Link(BANDWIDTH_MBPS)
    ours_us = time_calls_us(lambda: planner.best(link), repeats)
    baseline_us = time_calls_us(lambda: networkx_cut_ms(planner.search, BANDWIDTH_MBPS), args.naive_repeats)
    cached = CachedNetworkxCut(planner.search)
    cached_us = time_calls_us(lambda: cached(BANDWIDTH_MBPS), args.naive_repeats)
    best = planner.best(link)
    cut_ms = networkx_cut_ms(planner.search, BANDWIDTH_MBPS)
    assert abs(cached(BANDWIDTH_MBPS) - cut_ms) <= 1e-6 * max(1.0, cut_ms)  # the same graph, the same cut
    # the same optimum: networkx's cut (no RTT here) is never cheaper than ours, all-on-the-edge included
    assert best.total_ms <= cut_ms * (1 + 1e-6) + 1e-6 and min(cut_ms, planner.edge_only_ms()) >= best.total_ms * (1 - 1e-6) - 1e-6
    auto_us, auto_codecs = auto_decision_us(planner, name, repeats)
    return {"model": name, "units": len(model), "setup_ms": round(setup_ms, 2), "ours_us": round(ours_us, 2),
            "baseline_ms": round(baseline_us / 1e3, 2), "speedup": round(baseline_us / ours_us),
            "baseline": "networkx max-flow, graph rebuilt per decision",
            "cached_baseline_ms": round(cached_us / 1e3, 2), "speedup_vs_cached": round(cached_us / ours_us, 1),
            "auto_us": round(auto_us, 2), "auto_codecs": auto_codecs}


if __name__ == "__main__":
    main()
