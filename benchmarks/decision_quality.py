"""Decision quality: measured latency of the (cut, codec) the planner chooses, against the best
one found by measuring (the oracle), edge-only, cloud-only, the cut chosen sending float32 and
the JPEG upload. The headline benchmark.

  python -m benchmarks.decision_quality [--models ...] [--bandwidths 3g lte wifi 1 10 100 1000]
                                        [--rtt MS|typical] [--edge-slowdown F] [--repeats R]
                                        [--cloud-threads N] [--seed S] [--codec auto|none]
                                        [--accuracy-budget POINTS] [--image FILE] [--out CSV]

Everything goes through real sockets on 127.0.0.1 and the paced link (net.emulation.link.LinkPacer at
each bandwidth, Mbit/s), with --rtt ms paid once per request (default 0; "typical" takes the
paper's networks' typical RTTs, benchmarks.measure.TYPICAL_RTT_MS, and the planner is told the
same RTT). Set-up:
- the cloud is `cloud_api.py -p 0 --threads N --preload MODELS` in a child process; N defaults to
  the thread count the shipped cloud profile was made with (2), and the cloud side is predicted
  with that profile (LatencyPredictor.load("cloud")); with --cloud-threads 1 it is predicted with
  the 1-thread (edge) profile instead. Its threads are pinned (os.sched_setaffinity on each
  thread) to core 1, or to cores 0-1 at 2 threads;
- the edge is this process at 1 torch thread, pinned to core 0, emulating a device F times
  slower (--edge-slowdown, default 10) with collaborative_inference(..., edge_slowdown=F,
  slowdown_by_repeating=True): the edge's work is done F times (net.emulation.slowdown.run_slowed:
  waiting instead leaves this VM's core cold, and the next work is 2-7x slower), predicted with
  the edge profile x F. Codec costs: the edge's codec table for encoding and the
  image's preparation (x F), the cloud's for decoding (CodecTable.load("edge"), ("cloud")).
Each model is warmed up on both sides before anything is timed.

Codecs (--codec, default auto): a candidate is a (cut, codec) pair. With auto, a model that takes
image codecs (every chain here but fashion_net) starts each run from the image file (--image,
default scikit-learn's china.jpg, prepared as its weights expect: decoding it is edge time), the
planner chooses among the exact codecs (none, zstd; at cut 0 pixels, and file where both sides
decode images alike) and, under --accuracy-budget POINTS > 0, the lossy ones its accuracy table
admits; the candidates are every cut x every codec it may use there, plus the JPEG upload (jpeg90
at cut 0: measured beside, never skipped, in the oracle's pool only if the budget admits it).
With none, every cut sends float32 from the fixed input tensor: the method before codecs.

Per model and bandwidth every candidate is measured as benchmarks.measure says: a screening pass
(not counted; candidates whose paced transfer floor, coded bytes at the link's rate + RTT,
exceeds 1.5x the best total seen are skipped, and checked afterwards: `skips_exact`), then R
interleaved rounds over all kept candidates in a fresh seeded order each round. The oracle
(over the plans the chosen one was allowed to use: at budget 0, exact codecs only),
chosen/oracle with its per-round spread, the speed-ups, vs_best_endpoint, speedup_vs_none (the
cut chosen with codec none, `none_plan`, measured in the same rounds) and chosen_over_jpeg90 all
come from those same runs. Answers with exact codecs must equal local inference (`answers_ok`);
lossy ones are counted apart (`lossy_top1_agree` of `lossy_runs`). Summary: geometric means, the
worst ratio (targets geomean <= 1.05, worst <= 1.25), chosen/jpeg90 (geomean and worst; the
floor, <= 1.05, is judged only under a budget that admits lossy codecs), and the end-to-end
prediction bias (median and range of (predicted - measured) / measured, and per part). Per-
candidate measurements go to a second CSV beside --out (NAME_cuts.csv: one row per cut and
codec). Progress goes to stderr.
"""
from __future__ import annotations

import argparse
import os
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
from models import MODEL_NAMES, get_dnn_model
from net.apps.cli import slowdown_arg
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.emulation.link import LinkPacer, parse_bandwidth
from net.wire.codecs import ImageError, ImageSource
from predictor import Link
from predictor.codec_profile import sample_photo_paths
from predictor.planner import ChainPlanner, CodecTable
from utils.classes import top_k
from utils.provenance import provenance, write_csv_with_provenance

DEFAULT_BANDWIDTHS = ["3g", "lte", "wifi", "1", "10", "100", "1000"]

COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "units", "edge_slowdown", "chosen_cut", "chosen_layer",
           "oracle_cut", "oracle_layer", *COMPARISON_COLUMNS, "measured_cuts", "runs",
           "edge_runq_wait_ms", "cloud_runq_wait_ms", "case_s", *CODEC_COMPARISON_COLUMNS, "none_plan",
           "candidates", *CODEC_RUN_COLUMNS]
CUT_COLUMNS = ["model", "bandwidth", "bandwidth_mbps", "cut", "layer", *CANDIDATE_COLUMNS]


def chain_candidates(model, planner: ChainPlanner) -> list[Candidate]:
    """Every cut, with every codec the (configured) planner may use there, and the JPEG upload."""
    n = planner.num_units
    return with_codecs(planner, [Candidate(model.prefix(k), "cloud-only" if k == 0 else "edge-only" if k == n
                                           else "cut", k) for k in range(n + 1)])


def run_case(model, planner: ChainPlanner, x: torch.Tensor, cloud: LocalCloud, label: str, rtt_ms: float,
             repeats: int, edge_slowdown: float, seed: int, candidates: list[Candidate] | None = None,
             source: ImageSource | None = None, expected_top5: list[list] | None = None,
             codec_mode: str = "none", accuracy_budget: float = 0.0) -> tuple[dict, list[dict]]:
    t_case = time.perf_counter()
    link = Link(parse_bandwidth(label), rtt_ms)
    n = planner.num_units
    if candidates is None:
        candidates = chain_candidates(model, planner)
    index = {(c.partition.cut_point, c.codec): i for i, c in enumerate(candidates)}
    best = planner.best(link)
    chosen = index[best.cut_point, best.codec]
    none_plan = index[plan_with_codec_none(planner, link).cut_point, "none"]
    cloud_only, edge_only, jpeg90 = index[0, "none"], index[n, "none"], index.get((0, "jpeg90"))
    forced = {cloud_only, edge_only, chosen, none_plan} | ({jpeg90} if jpeg90 is not None else set())
    with CloudClient(HOST, cloud.port, pacer=LinkPacer(link.bandwidth_mbps), rtt_ms=rtt_ms) as client:
        client.connect()
        client.probe(8 * 1024)  # one paced round trip on this connection before timing
        bench = CandidateBench(model, planner, x, client, link, edge_slowdown, cloud.process.pid, candidates,
                               expected_top5, source)
        measured = bench.measure(forced, repeats, seed,
                                 describe=lambda i: f"cut {candidates[i].partition.cut_point:>2}/{n} "
                                                    f"{candidates[i].codec:<6} (predicted "
                                                    f"{bench.plans[i].total_ms:9.1f})")
    floors = [bench.floor_ms(i) for i in range(len(candidates))]
    pool = {i for i, c in enumerate(candidates) if c.in_pool}
    cmp = compare(measured, bench.plans, chosen, edge_only, cloud_only, floors, rtt_ms, pool, none_plan, jpeg90)
    oracle = cmp.pop("oracle")
    row = {"model": model.name, "bandwidth": label, "bandwidth_mbps": link.bandwidth_mbps, "units": n,
           "edge_slowdown": edge_slowdown, "chosen_cut": bench.plans[chosen].cut_point,
           "chosen_layer": bench.plans[chosen].label, "oracle_cut": bench.plans[oracle].cut_point,
           "oracle_layer": bench.plans[oracle].label, **cmp,
           "measured_cuts": ";".join(str(k) for k in sorted({candidates[i].partition.cut_point for i in measured.runs})),
           "runs": bench.runs, "edge_runq_wait_ms": round(bench.edge_runq_wait_ms, 1),
           "cloud_runq_wait_ms": round(bench.cloud_runq_wait_ms, 1), "case_s": round(time.perf_counter() - t_case, 1),
           "none_plan": bench.plans[none_plan].cut_point, "candidates": len(candidates), "codec_mode": codec_mode,
           "accuracy_budget": accuracy_budget, "answers_ok": bench.answers_ok, "lossy_runs": bench.lossy_runs,
           "lossy_top1_agree": bench.lossy_top1_agree}
    cut_rows = [{"model": model.name, "bandwidth": label, "bandwidth_mbps": link.bandwidth_mbps,
                 "cut": bench.plans[i].cut_point, "layer": bench.plans[i].label, **c}
                for i, c in enumerate(bench.candidate_rows(measured))]
    return row, cut_rows


def print_row(row: dict) -> None:
    jpeg = f"{row['chosen_over_jpeg90']:>6.2f}" if row["chosen_over_jpeg90"] != "" else f"{'-':>6}"
    print(f"{row['model']:<10} {row['bandwidth']:>5} {row['rtt_ms']:>5g} {row['chosen_cut']:>3}/{row['units']:<3} "
          f"{row['chosen_codec']:<6} {row['oracle_cut']:>6} {row['oracle_codec']:<6} {row['chosen_ms']:>10.1f} "
          f"{row['oracle_ms']:>10.1f} {row['ratio']:>6.3f} [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}] "
          f"{row['speedup_vs_edge']:>7.2f}x {row['speedup_vs_cloud']:>7.2f}x {row['vs_best_endpoint']:>6.2f}x "
          f"{row['none_plan']:>4} {row['speedup_vs_none']:>6.2f}x {jpeg} "
          f"{row['predicted_chosen_ms']:>10.1f} {row['predicted_error_pct']:>+6.1f}% "
          f"{row['measured']:>3}/{row['candidates']:<3} {row['case_s']:>6.0f}", flush=True)


HEADER = (f"{'model':<10} {'bw':>5} {'rtt':>5} {'chosen':>14} {'oracle':>13} {'chosen ms':>10} {'oracle ms':>10} "
          f"{'ratio':>6} {'[min-max]':>11} {'vs edge':>8} {'vs cloud':>8} {'vs best':>7} {'none':>4} {'vs none':>7} "
          f"{'/jpeg':>6} {'pred ms':>10} {'err':>7} {'meas':>7} {'s':>6}")


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", choices=MODEL_NAMES, default=list(MODEL_NAMES))
    p.add_argument("--bandwidths", nargs="+", default=DEFAULT_BANDWIDTHS, metavar="MBPS|3g|lte|wifi",
                   help="uplinks, Mbit/s or presets (default: %(default)s)")
    p.add_argument("--rtt", type=rtt_arg, default="0", metavar="MS|typical",
                   help="round-trip time paid once per request, ms, or 'typical' for the presets' "
                        "(3g 300, lte 70, wifi 28; default 0)")
    p.add_argument("--edge-slowdown", type=slowdown_arg, default=10.0, metavar="F",
                   help="the emulated edge is F times slower than this machine (default 10)")
    p.add_argument("--repeats", type=int, default=5, metavar="R",
                   help="interleaved rounds: runs of every kept candidate (median; default 5)")
    p.add_argument("--cloud-threads", type=int, default=None, metavar="N",
                   help="the cloud's torch threads (default: the cloud profile's, predicted with it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the rounds' orders (default 0)")
    add_codec_args(p, sample_photo_paths()[0])
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "decision_quality.csv")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be at least 1")
    check_bandwidths(p, args.bandwidths, args.rtt)
    cuts_out = args.out.with_name(f"{args.out.stem}_cuts.csv")

    edge_predictor, cloud_predictor, cloud_threads, predicted_with = predictors(args.cloud_threads)
    codec_tables = CodecTable.load("edge"), CodecTable.load("cloud")
    models = {name: get_dnn_model(name) for name in args.models}
    inputs = {}
    for name, model in models.items():
        _ = model.fingerprint  # hashed once, before any clock starts
        try:
            inputs[name] = model_source(model, args.codec, args.image)
        except ImageError as e:
            p.error(str(e))
    rows, cut_rows = [], []
    load_before = os.getloadavg()
    t_start = time.perf_counter()
    with pinned_cloud(args.models, cloud_threads) as (cloud, pinning):
        print(f"edge: this process, 1 torch thread, emulating a device {args.edge_slowdown:g}x slower; "
              f"cloud: cloud_api.py child, {cloud_threads} torch thread(s); pinning: {pinning}")
        print(f"predicted: {predicted_with}; RTT {args.rtt} ms; {args.repeats} interleaved round(s); "
              "link paced by net.emulation.link.LinkPacer")
        same_decoder = same_image_decoder(cloud.port)
        print(f"codecs: {args.codec}, accuracy budget {args.accuracy_budget:g} points"
              + (f"; image {args.image} for the models that take image codecs (file: "
                 f"{'same' if same_decoder else 'different'} image decoders)" if args.codec == "auto" else
                 "; float32 from the fixed input tensor"))
        print(HEADER, flush=True)
        for name, model in models.items():
            source, x = inputs[name]  # each model's own input (fashion_net: 1x1x28x28, no image codec)
            planner = ChainPlanner(model, edge=edge_predictor, cloud=cloud_predictor, edge_slowdown=args.edge_slowdown,
                                   codec_tables=codec_tables)
            planner.use_codecs(args.codec, args.accuracy_budget, source, same_decoder)
            candidates = chain_candidates(model, planner)
            log(f"{name}: {len(candidates)} candidates ({planner.num_units + 1} cuts); warming up both sides")
            warm_up(model, x, cloud.port)
            with torch.no_grad():
                expected_top5 = top_k(model.forward_whole(x.clone()))
            for label in args.bandwidths:
                rtt_ms = rtt_for(args.rtt, label)
                log(f"  {name} at {label} ({parse_bandwidth(label):g} Mbit/s, RTT {rtt_ms:g} ms), elapsed "
                    f"{time.perf_counter() - t_start:.0f} s")
                row, per_cut = run_case(model, planner, x, cloud, label, rtt_ms, args.repeats, args.edge_slowdown,
                                        args.seed, candidates, source, expected_top5, args.codec,
                                        args.accuracy_budget)
                rows.append(row)
                cut_rows.extend(per_cut)
                print_row(row)
    total_s = time.perf_counter() - t_start
    summary = summarize(rows, cut_rows)
    print_summary(summary, total_s)
    meta = provenance(host=HOST, edge_threads=1, cloud_threads=cloud_threads, edge_slowdown=args.edge_slowdown,
                      pinning=pinning, cloud=f"cloud_api.py subprocess --threads {cloud_threads}",
                      predictors=predicted_with, rtt=args.rtt, repeats=args.repeats, seed=args.seed,
                      codec=args.codec, image=str(args.image.name) if args.codec == "auto" else "",
                      codec_tables="edge's for encoding and the image, cloud's for decoding",
                      warmup_runs=WARMUP_RUNS, link="net.emulation.link.LinkPacer",
                      method="benchmarks.measure: screening pass, then interleaved rounds over all kept candidates",
                      loadavg_before=" ".join(f"{v:.2f}" for v in load_before),
                      loadavg_after=" ".join(f"{v:.2f}" for v in os.getloadavg()),
                      run_s=round(total_s), **summary)
    write_csv_with_provenance(args.out, rows, COLUMNS, meta)
    write_csv_with_provenance(cuts_out, cut_rows, CUT_COLUMNS, meta)
    print(f"wrote {args.out} and {cuts_out}")
    return rows


if __name__ == "__main__":
    main()
