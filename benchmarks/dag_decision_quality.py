"""Decision quality for the DAG models (ResNet-18, GoogLeNet): measured latency of the
(partition, codec) the planner chooses (the min cut, then the best codec for its tensors),
against the best of a set of measured (partition, codec) pairs (the oracle), edge-only,
cloud-only, the partition chosen sending float32 and the JPEG upload. The DAG counterpart of
benchmarks.decision_quality, measured the same way (benchmarks.measure).

  python -m benchmarks.dag_decision_quality [--models res_net google_net] [--bandwidths 3g lte wifi]
                                            [--rtt MS|typical] [--edge-slowdown F] [--repeats R]
                                            [--cloud-threads N] [--sample N] [--seed S]
                                            [--codec auto|none] [--accuracy-budget POINTS]
                                            [--image FILE] [--out CSV]

The set-up is decision_quality's: a real cloud, `cloud_api.py -p 0 --threads N --preload MODELS`
in a child process (N defaults to the cloud profile's thread count, and the cloud side is then
predicted with the cloud's own profile), the edge this process at 1 torch thread pinned to core 0,
emulating a device F times slower (--edge-slowdown, default 10; the edge's work done F times:
net.emulation.slowdown.run_slowed); real sockets on 127.0.0.1 through
the paced link (net.emulation.link.LinkPacer) with --rtt ms paid once per request (default 0).
Codec costs: the edge's codec table for encoding and the image (x F), the cloud's for decoding.

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
- the partition the planner chooses at that bandwidth (min_cut), whatever it is, and the one it
  chooses with codec none (`none_plan`, "none-plan" if it is not already a candidate).
Codecs (--codec, default auto): with auto the edge starts each run from the image file (--image,
default scikit-learn's china.jpg; decoding it is edge time), the planner may use the exact codecs
(none, zstd; at cut 0 pixels, and file where both sides decode images alike) and, under
--accuracy-budget POINTS > 0, the lossy ones its accuracy table admits; every partition above is
a candidate with each codec the planner may use there, and the JPEG upload (jpeg90 at cut 0) is
measured beside (never skipped; in the oracle's pool only if the budget admits it). With none,
every partition sends float32 from the fixed input tensor: the method before codecs.
All are measured alike (benchmarks.measure: a screening pass that skips a candidate whose paced
transfer floor, coded bytes at the link's rate + RTT, exceeds 1.5x the best total seen, checked
afterwards, then R interleaved rounds); the oracle (over the plans the chosen one was allowed to
use: at budget 0, exact codecs only), chosen/oracle with its per-round spread, the speed-ups,
vs_best_endpoint, speedup_vs_none and chosen_over_jpeg90 come from the same runs. Every answer
of an exact codec is compared with local inference of the whole model in this process (top-5
indices equal, probabilities within 1e-5 relative): `answers_ok` counts the runs that matched,
out of `runs` less `lossy_runs`; a lossy codec's answers are not held to it
(`lossy_top1_agree` counts the top-1 classes equal to local inference).

Results: --out (one row per model and bandwidth) and NAME_partitions.csv beside it (every
candidate: origin, nodes on the edge, tensors crossing, codec, predicted and measured parts, or
phase "skipped"; tensor_bytes are the tensors' float32 bytes, coded_bytes the coded payload,
transfer_bytes the whole request frame as sent), both with provenance. Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import torch

from benchmarks import RESULTS_DIR  # fresh results: runs/benchmarks/ (benchmarks/__init__.py)
from benchmarks.measure import (
    CANDIDATE_COLUMNS,
    CODEC_COMPARISON_COLUMNS,
    CODEC_RUN_COLUMNS,
    COMPARISON_COLUMNS,
    HOST,
    WARMUP_RUNS,
    Candidate,
    CandidateBench,
    add_codec_args,
    check_bandwidths,
    compare,
    log,
    model_source,
    pinned_cloud,
    plan_with_codec_none,
    predictors,
    print_summary,
    rtt_arg,
    rtt_for,
    same_image_decoder,
    summarize,
    warm_up,
    with_codecs,
)
from models.dag import DAG_MODEL_NAMES, DagModel, get_dag_model
from net.apps.cli import bandwidth_arg, slowdown_arg
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.emulation.link import LinkPacer, parse_bandwidth
from net.wire.codecs import ImageError, ImageSource
from predictor import Link
from predictor.codec_profile import sample_photo_paths
from predictor.planner import DagPlanner, Plan
from predictor.planner.dag_cut import is_valid
from utils.classes import top_k
from utils.provenance import provenance, write_csv_with_provenance

DEFAULT_BANDWIDTHS = ["3g", "lte", "wifi"]
DEFAULT_SAMPLE = 16

COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "nodes", "edge_slowdown", "candidates",
           "chosen_origin", "chosen_edge_nodes", "chosen_prefix", "chosen_tensors", "chosen_crossing", "chosen_bytes",
           "oracle_origin", "oracle_edge_nodes", "oracle_prefix", "oracle_tensors", "oracle_crossing",
           *COMPARISON_COLUMNS, "runs", "answers_ok", "edge_runq_wait_ms", "cloud_runq_wait_ms", "case_s",
           *CODEC_COMPARISON_COLUMNS, "none_plan", "none_plan_crossing",
           *[c for c in CODEC_RUN_COLUMNS if c != "answers_ok"]]
PARTITION_COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "candidate", "origin", "edge_nodes", "prefix", "tensors",
                     "crossing", "tensor_bytes", *CANDIDATE_COLUMNS]


# ----------------------------------------------------------------------------- candidates

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
    out = [Candidate(model.prefix(0), "cloud-only", 0), Candidate(model.prefix(n), "edge-only", n)]
    out += [Candidate(model.prefix(k), "boundary", k) for k in range(1, n) if width[k] == 1]
    rng = random.Random(seed)
    inside = [k for k in range(1, n) if width[k] > 1]
    out += [Candidate(model.prefix(k), "prefix", k) for k in sorted(rng.sample(inside, min(sample // 2, len(inside))))]
    seen = {c.edge_nodes for c in out} | set(prefixes.values())
    wanted, attempts = sample - sum(c.origin == "prefix" for c in out), 0
    while wanted > 0 and attempts < 1000 * max(sample, 1):
        attempts += 1
        nodes = random_down_set(model, rng)
        if nodes not in seen:
            seen.add(nodes)
            out.append(Candidate(model.partition(nodes), "random", None))
            wanted -= 1
    edges = model.edges()
    assert all(is_valid(edges, c.edge_nodes, model.input_name) for c in out)
    return out


def prefix_of(model: DagModel, edge_nodes: frozenset[str]) -> int | None:
    k = len(edge_nodes) - 1
    return k if model.prefix(k).edge_nodes == edge_nodes else None


# ----------------------------------------------------------------------------- measuring

def run_case(model: DagModel, planner: DagPlanner, x: torch.Tensor, cloud: LocalCloud, label: str, rtt_ms: float,
             repeats: int, edge_slowdown: float, seed: int, candidates: list[Candidate],
             expected_top5: list[list], source: ImageSource | None = None, codec_mode: str = "none",
             accuracy_budget: float = 0.0) -> tuple[dict, list[dict]]:
    """`candidates`: the model's (partition, codec) pairs (model_candidates, then
    benchmarks.measure.with_codecs); the chosen plan and the one chosen with codec none are added
    when they are not among them."""
    t_case = time.perf_counter()
    link = Link(parse_bandwidth(label), rtt_ms)
    candidates = list(candidates)

    def index_of(plan: Plan, origin: str) -> int:
        key = (plan.edge_nodes, plan.codec)
        found = next((i for i, c in enumerate(candidates) if c.key == key), None)
        if found is None:
            candidates.append(Candidate(plan.partition, origin, prefix_of(model, plan.edge_nodes), plan.codec))
            found = len(candidates) - 1
        return found

    chosen = index_of(planner.best(link), "chosen")
    none_plan = index_of(plan_with_codec_none(planner, link), "none-plan")
    cloud_only = index_of(planner.cost(model.prefix(0), link, codec="none"), "cloud-only")
    edge_only = index_of(planner.cost(model.prefix(model.num_units), link), "edge-only")
    jpeg90 = next((i for i, c in enumerate(candidates) if c.partition.cut_point == 0 and c.codec == "jpeg90"), None)
    forced = {cloud_only, edge_only, chosen, none_plan} | ({jpeg90} if jpeg90 is not None else set())
    with CloudClient(HOST, cloud.port, pacer=LinkPacer(link.bandwidth_mbps), rtt_ms=rtt_ms) as client:
        client.connect()
        client.probe(8 * 1024)  # one paced round trip on this connection before timing
        bench = CandidateBench(model, planner, x, client, link, edge_slowdown, cloud.process.pid, candidates,
                               expected_top5, source)

        def describe(i: int) -> str:
            plan = bench.plans[i]
            return (f"{candidates[i].origin:>11} {len(plan.edge_nodes) - 1:>3} nodes, {len(plan.crossing)} "
                    f"tensor(s), {plan.codec:<6} {plan.coded_bytes:>8} B: predicted {plan.total_ms:9.1f}")

        measured = bench.measure(forced, repeats, seed, describe)
    floors = [bench.floor_ms(i) for i in range(len(candidates))]
    pool = {i for i, c in enumerate(candidates) if c.in_pool}
    cmp = compare(measured, bench.plans, chosen, edge_only, cloud_only, floors, rtt_ms, pool, none_plan, jpeg90)
    oracle = cmp.pop("oracle")
    plan, oracle_plan, none = bench.plans[chosen], bench.plans[oracle], bench.plans[none_plan]
    row = {"model": model.name, "bandwidth": label, "bandwidth_mbps": link.bandwidth_mbps, "nodes": len(model),
           "edge_slowdown": edge_slowdown, "candidates": len(candidates), "chosen_origin": candidates[chosen].origin,
           "chosen_edge_nodes": len(plan.edge_nodes) - 1, "chosen_prefix": _blank(candidates[chosen].prefix),
           "chosen_tensors": len(plan.crossing), "chosen_crossing": ";".join(plan.crossing),
           "chosen_bytes": plan.transfer_bytes, "oracle_origin": candidates[oracle].origin,
           "oracle_edge_nodes": len(oracle_plan.edge_nodes) - 1, "oracle_prefix": _blank(candidates[oracle].prefix),
           "oracle_tensors": len(oracle_plan.crossing), "oracle_crossing": ";".join(oracle_plan.crossing),
           **cmp, "runs": bench.runs, "answers_ok": bench.answers_ok,
           "edge_runq_wait_ms": round(bench.edge_runq_wait_ms, 1),
           "cloud_runq_wait_ms": round(bench.cloud_runq_wait_ms, 1), "case_s": round(time.perf_counter() - t_case, 1),
           "none_plan": len(none.edge_nodes) - 1, "none_plan_crossing": ";".join(none.crossing),
           "codec_mode": codec_mode, "accuracy_budget": accuracy_budget, "lossy_runs": bench.lossy_runs,
           "lossy_top1_agree": bench.lossy_top1_agree}
    partition_rows = [{"model": model.name, "bandwidth": label, "bandwidth_mbps": link.bandwidth_mbps, "candidate": i,
                       "origin": candidates[i].origin, "edge_nodes": len(bench.plans[i].edge_nodes) - 1,
                       "prefix": _blank(candidates[i].prefix), "tensors": len(bench.plans[i].crossing),
                       "crossing": ";".join(bench.plans[i].crossing), "tensor_bytes": bench.plans[i].transfer_bytes,
                       **c} for i, c in enumerate(bench.candidate_rows(measured))]
    return row, partition_rows


def _blank(value):
    return "" if value is None else value


def describe(edge_nodes: int, prefix, tensors: int, nodes: int) -> str:
    where = f"first {prefix}" if prefix != "" else f"{edge_nodes} (not a prefix)"
    if edge_nodes == nodes:
        return "all on the edge"
    if edge_nodes == 0:
        return "all on the cloud"
    return f"{where}/{nodes} nodes, {tensors} tensor{'s' if tensors != 1 else ''}"


HEADER = (f"{'model':<10} {'bw':>5} {'rtt':>5} {'chosen partition':<41} {'oracle partition':<41} {'chosen ms':>10} "
          f"{'oracle ms':>10} {'ratio':>6} {'[min-max]':>11} {'vs edge':>8} {'vs cloud':>8} {'vs best':>7} "
          f"{'vs none':>7} {'/jpeg':>6} {'pred ms':>9} {'err':>7} {'meas':>5} {'ok':>7} {'s':>5}")


def print_row(row: dict) -> None:
    n = row["nodes"]
    chosen = describe(row["chosen_edge_nodes"], row["chosen_prefix"], row["chosen_tensors"], n)
    oracle = describe(row["oracle_edge_nodes"], row["oracle_prefix"], row["oracle_tensors"], n)
    jpeg = f"{row['chosen_over_jpeg90']:>6.2f}" if row["chosen_over_jpeg90"] != "" else f"{'-':>6}"
    print(f"{row['model']:<10} {row['bandwidth']:>5} {row['rtt_ms']:>5g} "
          f"{chosen + ' ' + row['chosen_codec']:<41} {oracle + ' ' + row['oracle_codec']:<41} "
          f"{row['chosen_ms']:>10.1f} {row['oracle_ms']:>10.1f} {row['ratio']:>6.3f} "
          f"[{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] "
          f"{row['speedup_vs_edge']:>7.2f}x {row['speedup_vs_cloud']:>7.2f}x {row['vs_best_endpoint']:>6.2f}x "
          f"{row['speedup_vs_none']:>6.2f}x {jpeg} "
          f"{row['predicted_chosen_ms']:>9.1f} {row['predicted_error_pct']:>+6.1f}% {row['measured']:>2}/"
          f"{row['candidates']:<2} {row['answers_ok']:>3}/{row['runs'] - row['lossy_runs']:<3} "
          f"{row['case_s']:>5.0f}", flush=True)


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
    p.add_argument("--rtt", type=rtt_arg, default="0", metavar="MS|typical",
                   help="round-trip time paid once per request, ms, or 'typical' for the presets' "
                        "(3g 300, lte 70, wifi 28; default 0)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=10.0, metavar="F",
                   help="emulate an edge device F times slower than this machine (default %(default)g)")
    p.add_argument("--repeats", type=count_arg(1), default=5, metavar="R",
                   help="interleaved rounds: runs of every kept partition, their median reported "
                        "(default %(default)s)")
    p.add_argument("--cloud-threads", type=count_arg(1), default=None, metavar="N",
                   help="the cloud's torch threads (default: the cloud profile's, predicted with it)")
    p.add_argument("--sample", type=count_arg(0), default=DEFAULT_SAMPLE, metavar="N",
                   help="other valid partitions per model beyond the boundaries (default %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample and the rounds' orders (default %(default)s)")
    add_codec_args(p, sample_photo_paths()[0])
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "dag_decision_quality.csv")
    args = p.parse_args(argv)
    check_bandwidths(p, args.bandwidths, args.rtt)
    if args.codec == "auto":
        try:
            ImageSource.from_path(args.image)
        except ImageError as e:
            p.error(str(e))
    return args


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    partitions_out = args.out.with_name(f"{args.out.stem}_partitions.csv")
    edge_predictor, cloud_predictor, cloud_threads, predicted_with = predictors(args.cloud_threads)
    models = {name: get_dag_model(name) for name in args.models}
    inputs = {}
    for name, model in models.items():
        _ = model.fingerprint  # hashed once, before any clock starts
        inputs[name] = model_source(model, args.codec, args.image)
    setup = dict(host=HOST, edge_threads=1, cloud_threads=cloud_threads, edge_slowdown=args.edge_slowdown,
                 cloud=f"cloud_api.py subprocess --threads {cloud_threads}", predictors=predicted_with,
                 codec=args.codec, image=str(args.image.name) if args.codec == "auto" else "",
                 codec_tables="edge's for encoding and the image, cloud's for decoding",
                 rtt=args.rtt, repeats=args.repeats, sample=args.sample, seed=args.seed, warmup_runs=WARMUP_RUNS,
                 link="net.emulation.link.LinkPacer",
                 method="benchmarks.measure: screening pass, then interleaved rounds over all kept candidates",
                 loadavg_before=" ".join(f"{v:.2f}" for v in os.getloadavg()))
    rows, partition_rows = [], []
    t_start = time.perf_counter()
    with pinned_cloud(args.models, cloud_threads) as (cloud, pinning):
        setup["pinning"] = pinning
        print(f"DAG decision quality: edge = this process at 1 thread, {args.edge_slowdown:g}x slower (emulated); "
              f"cloud = child at {cloud_threads} thread(s); pinning: {pinning}; predicted: {predicted_with}; "
              f"candidates: cloud-only, edge-only, single-tensor boundaries, {args.sample} sampled (seed "
              f"{args.seed}), the chosen, the chosen with codec none; RTT {args.rtt} ms; {args.repeats} interleaved "
              f"round(s); codecs: {args.codec}, accuracy budget {args.accuracy_budget:g} points"
              + (f", image {args.image}" if args.codec == "auto" else ", float32 from the fixed input tensor"))
        print(HEADER, flush=True)
        same_decoder = same_image_decoder(cloud.port)
        for name, model in models.items():
            source, x = inputs[name]
            planner = DagPlanner(model, edge_predictor, cloud_predictor, edge_slowdown=args.edge_slowdown)
            planner.use_codecs(args.codec, args.accuracy_budget, source, same_decoder)
            partitions = model_candidates(model, args.sample, args.seed)
            candidates = with_codecs(planner, partitions)
            log(f"{name}: {len(partitions)} candidate partitions, {len(candidates)} with their codecs; warming up "
                "both sides")
            warm_up(model, x, cloud.port)
            with torch.no_grad():
                model.run_edge(x, model.prefix(model.num_units))  # the op-by-op path the edge times
                expected_top5 = top_k(model(x.clone()))
            for label in args.bandwidths:
                rtt_ms = rtt_for(args.rtt, label)
                log(f"  {name} at {label} ({parse_bandwidth(label):g} Mbit/s, RTT {rtt_ms:g} ms), "
                    f"{time.perf_counter() - t_start:.0f} s in")
                row, per_partition = run_case(model, planner, x, cloud, label, rtt_ms, args.repeats,
                                              args.edge_slowdown, args.seed, candidates, expected_top5, source,
                                              args.codec, args.accuracy_budget)
                rows.append(row)
                partition_rows.extend(per_partition)
                print_row(row)
    run_s = time.perf_counter() - t_start
    summary = summarize(rows, partition_rows)
    print_summary(summary, run_s)
    meta = provenance(**setup, loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()), run_s=round(run_s),
                      **summary)
    for path, table, columns in ((args.out, rows, COLUMNS), (partitions_out, partition_rows, PARTITION_COLUMNS)):
        write_csv_with_provenance(path, table, columns, meta)
    print(f"wrote {args.out} and {partitions_out}")
    return rows


if __name__ == "__main__":
    main()
