"""The one way the decision-quality benchmarks (chains: benchmarks.decision_quality; DAGs:
benchmarks.dag_decision_quality) measure candidate plans and compare them.

A candidate is a (partition, codec) pair: the partition's crossing tensors (at cut 0 maybe the
image file) coded with that codec, predicted with `Planner.cost(partition, link, codec=codec)`
and run with `collaborative_inference(..., partition=, codec=)`. With --codec auto the
candidates are every partition x every codec the planner may use there (`with_codecs`: the exact
tensor codecs none and zstd; at cut 0 the input codecs pixels and file; under an accuracy budget
the admitted lossy codecs), plus the JPEG-upload baseline (`jpeg90` at cut 0), which is measured
beside but is not a plan the chosen one could be (not in the oracle's pool) unless the budget
admits it. With --codec none every candidate sends float32 (the method before codecs).

Every candidate is measured the same way:
1. a screening pass (not counted): each candidate once, in ascending predicted total. A candidate
   is skipped when its paced transfer floor (coded bytes * 8 / bandwidth + RTT: the pacer makes N
   bytes take at least N / rate) exceeds SKIP_MARGIN x the best total seen so far. Cloud-only
   (float32), edge-only, the chosen candidate, the plan chosen with codec none and the jpeg90
   baseline are never skipped. After the rounds, each skipped candidate's floor is checked against
   the final oracle median (`skips_exact`: true when none that could be the oracle could have won);
2. R interleaved rounds: every kept candidate once per round, in a seeded random order that
   changes each round, so slow drift of the machine (other processes) falls on all alike;
3. from those same R runs per candidate: the oracle is the candidate of its pool (the plans the
   chosen one was allowed to use: at budget 0, exact codecs only) with the least median total;
   chosen/oracle is the ratio of the two medians (>= 1 by construction: no special case when they
   are the same candidate, no re-measurement of either). The spread beside it is the per-round
   ratio (chosen's run / oracle's run in the same round): p25, p75, min, max. The oracle, as the
   least of many noisy medians, is biased low, so the ratio is biased high (against the planner).
   vs_best_endpoint = median of the better endpoint (edge-only or cloud-only, by median) / median
   of the chosen: > 1 means splitting (or picking the right endpoint) paid; with its per-round
   min and max. Beside them, from the same runs: speedup_vs_none = median of the plan the planner
   chooses with codec none (today's cut, float32) / median of the chosen; chosen_over_jpeg90 =
   median of the chosen / median of the jpeg90 upload (with its per-round min and max).
4. answers: with an exact codec every answer must equal local inference (top-5 classes,
   probabilities within ANSWER_RTOL: `answers_ok`); a lossy one (jpeg90, fp16, int8) is not held
   to it: its top-1 agreement with local inference is counted apart (`lossy_top1_agree` out of
   `lossy_runs`).
"""
from __future__ import annotations

import math
import os
import random
import statistics
import sys
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from models import preprocessing
from models.split import Partition, SplitModel
from net.cloud.local import LocalCloud
from net.edge.client import CloudClient
from net.edge.runner import EdgeReport, collaborative_inference
from net.wire.codecs import ImageSource
from predictor import LatencyPredictor, Link, send_ms
from predictor.codec_profile import model_inputs
from predictor.planner import Plan, Planner
from predictor.planner.codec_costs import BASELINE_CODEC
from utils.image import fixed_input

HOST = "127.0.0.1"
EDGE_CORE, CLOUD_CORE = 0, 1
WARMUP_RUNS = 2
SKIP_MARGIN = 1.5
ANSWER_RTOL = 1e-5
TARGET_GEOMEAN_RATIO, TARGET_WORST_RATIO = 1.05, 1.25
TARGET_OVER_JPEG90 = 1.05  # under a budget admitting lossy codecs: never more than 5% slower than jpeg90
CODEC_MODES = ("auto", "none")

# Typical RTTs of the paper's three networks, ms, from WebPageTest's connectivity profiles
# (WPO-Foundation/webpagetest, www/settings/connectivity.ini.sample): "3G (... 300ms RTT)",
# "LTE (12 Mbps, 70ms RTT)", "Cable (5/1 Mbps 28ms RTT)" standing for the wired line behind a
# home Wi-Fi. Used by --rtt typical.
TYPICAL_RTT_MS = {"3g": 300.0, "lte": 70.0, "wifi": 28.0}

# The columns every decision-quality row carries, from compare().
COMPARISON_COLUMNS = ["rtt_ms", "rounds", "chosen_is_oracle", "chosen_ms", "oracle_ms", "ratio", "ratio_p25", "ratio_p75", "ratio_min",
                      "ratio_max", "edge_only_ms", "cloud_only_ms", "speedup_vs_edge", "speedup_vs_cloud",
                      "best_endpoint", "vs_best_endpoint", "vs_best_endpoint_min", "vs_best_endpoint_max",
                      "predicted_chosen_ms", "predicted_error_pct", "measured", "skipped", "skips_exact"]
# The codec columns compare() adds (blank where there is no jpeg90 baseline: --codec none, or a
# model that takes no image codec).
CODEC_COMPARISON_COLUMNS = ["chosen_codec", "chosen_coded_bytes", "oracle_codec", "oracle_pool", "none_plan_ms",
                            "speedup_vs_none", "jpeg90_ms", "chosen_over_jpeg90", "chosen_over_jpeg90_min",
                            "chosen_over_jpeg90_max"]
# The columns of every row a benchmark adds about the codecs and the answers.
CODEC_RUN_COLUMNS = ["codec_mode", "accuracy_budget", "answers_ok", "lossy_runs", "lossy_top1_agree"]
# The columns of every per-candidate row.
CANDIDATE_COLUMNS = ["rtt_ms", "phase", "runs", "transfer_bytes", "floor_ms", "predicted_edge_ms",
                     "predicted_transfer_ms", "predicted_cloud_ms", "predicted_total_ms", "edge_ms", "transfer_ms",
                     "cloud_ms", "total_ms", "total_min_ms", "total_max_ms", "overhead_ms", "predicted_error_pct",
                     "edge_runq_wait_ms", "cloud_runq_wait_ms", "codec", "in_oracle_pool", "lossy",
                     "predicted_coded_bytes", "coded_bytes", "predicted_encode_ms", "predicted_decode_ms",
                     "encode_ms", "decode_ms"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def rtt_for(rtt: str, bandwidth_label: str) -> float:
    """The RTT (ms) of a run: a number, or "typical" for the paper's networks (TYPICAL_RTT_MS)."""
    if rtt == "typical":
        key = bandwidth_label.strip().lower()
        if key not in TYPICAL_RTT_MS:
            raise ValueError(f"--rtt typical knows only {', '.join(TYPICAL_RTT_MS)}, not {bandwidth_label!r}")
        return TYPICAL_RTT_MS[key]
    value = float(rtt)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"RTT must be >= 0 ms, got {rtt!r}")
    return value


def rtt_arg(text: str) -> str:
    """argparse type for --rtt: a number of ms >= 0, or "typical"."""
    import argparse
    if text == "typical":
        return text
    try:
        rtt_for(text, "")
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected ms >= 0 or 'typical', got {text!r}") from e
    return text


def check_bandwidths(p, labels: Sequence[str], rtt: str | None = None) -> None:
    """argparse: p.error (one line, exit 2) for a bandwidth the link does not understand, or, with
    `rtt`, one it cannot take ("typical" knows the presets only)."""
    import argparse

    from net.apps.cli import bandwidth_arg
    for label in labels:
        try:
            bandwidth_arg(label)
            if rtt is not None:
                rtt_for(rtt, label)
        except (argparse.ArgumentTypeError, ValueError) as e:
            p.error(str(e))


def add_codec_args(p, default_image: Path) -> None:
    """--codec auto|none, --accuracy-budget, --image: the same on both decision-quality benchmarks."""
    p.add_argument("--codec", choices=CODEC_MODES, default="auto",
                   help="auto (default): candidates are (partition, codec) pairs, the planner chooses with "
                        "codecs, the JPEG upload (jpeg90 at cut 0) is measured beside; none: float32 only, "
                        "the fixed input tensor, as before codecs")
    from net.apps.cli import budget_points
    p.add_argument("--accuracy-budget", type=budget_points, default=0.0, metavar="POINTS",
                   help="top-1 points auto may lose to lossy codecs (default 0: exact codecs only; the "
                        "oracle is then over exact plans)")
    p.add_argument("--image", type=Path, default=default_image, metavar="FILE",
                   help="with --codec auto, the image file the edge starts from for models that take image "
                        "codecs (default: scikit-learn's china.jpg)")


# ----------------------------------------------------------------------------- codecs

def model_source(model: SplitModel, codec_mode: str, image: Path) -> tuple[ImageSource | None, torch.Tensor]:
    """(the image file in hand or None, the input tensor): with --codec auto, a model that takes
    image codecs starts from the file (prepared as its weights expect), any other from a real
    input of its own (fashion_net: a Fashion-MNIST test image; predictor.codec_profile.model_inputs,
    the data its codecs' sizes were learned from: a random tensor does not compress as data does);
    always with --codec none, from the fixed random tensor of its input shape."""
    shape = tuple(model.input_shape)
    if codec_mode == "auto":
        source = ImageSource.from_path(image, preprocessing(model.name))
        if source.input_codecs(shape):
            return source, source.tensor()
        return None, model_inputs(model.name, [source])[0]
    return None, fixed_input(shape)


def with_codecs(planner: Planner, partitions: Sequence[Candidate]) -> list[Candidate]:
    """Each candidate partition with every codec the (configured) planner may use there, in its
    listed order ("none" first); edge-only sends nothing ("none"). Then the JPEG-upload baseline,
    jpeg90 at cut 0, where the image in hand has it and the planner may not use it (origin
    "jpeg-upload", outside the oracle's pool)."""
    out: list[Candidate] = []
    for c in partitions:
        codecs = ("none",) if c.partition.all_edge else planner.codecs.codecs_at(c.partition.cut_point)
        out += [replace(c, codec=codec) for codec in codecs]
    if planner.has_image_size(BASELINE_CODEC) and not any(c.codec == BASELINE_CODEC for c in out):
        out.append(Candidate(planner.model.prefix(0), "jpeg-upload", 0, BASELINE_CODEC, in_pool=False))
    return out


def plan_with_codec_none(planner: Planner, link: Link) -> Plan:
    """The plan the planner chooses sending float32 (codec none) from the same input: today's
    chosen cut. The planner's codecs are restored."""
    codecs = planner.codecs
    allowed, image, budget = codecs.allowed, codecs.image, codecs.budget
    planner.configure_codecs(("none",), image, 0.0)
    try:
        return planner.best(link)
    finally:
        planner.configure_codecs(allowed, image, budget)


def same_image_decoder(port: int) -> bool:
    """Whether the cloud on `port` decodes image files as this process does (its hello says)."""
    with CloudClient(HOST, port) as client:
        client.connect()
        return client.same_image_decoder


# ----------------------------------------------------------------------------- pinning

def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and {EDGE_CORE, CLOUD_CORE} <= os.sched_getaffinity(0)


def pin_threads(pid: int, cores: set[int]) -> None:
    """Pin every thread of process `pid` (threads it creates later inherit the pinning)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except ProcessLookupError:  # a thread that has just ended
            pass


def cloud_cores(threads: int) -> set[int]:
    """The cores the cloud child is pinned to: core 1 alone at 1 thread; at more threads, core 1
    and as many more as it has threads (core 0 among them, which the edge holds only while it
    computes: edge and cloud never compute at once in one request)."""
    return {CLOUD_CORE} if threads <= 1 else set(sorted(os.sched_getaffinity(0) | {CLOUD_CORE})[:max(threads, 2)])


def runqueue_wait_ms(pid: int) -> float:
    """Total time the threads of `pid` have waited runnable for a core (schedstat field 2), ms."""
    total_ns = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            total_ns += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):  # a thread that has just ended; no schedstat
            pass
    return total_ns / 1e6


@contextmanager
def pinned_cloud(models: list[str], cloud_threads: int):
    """A cloud child at `cloud_threads` torch threads (pinned: cloud_cores), this process (the edge)
    on core 0 at 1 torch thread, for the duration; yields (cloud, what the pinning is). Restores
    this process's cores and threads."""
    own_cores, own_threads = os.sched_getaffinity(0), torch.get_num_threads()
    pin = can_pin()
    torch.set_num_threads(1)
    try:
        with LocalCloud(models, threads=cloud_threads) as cloud:
            cores = cloud_cores(cloud_threads)
            if pin:  # the cloud's threads first: this process's own pinning must not rub off on them
                pin_threads(cloud.process.pid, cores)
                pin_threads(os.getpid(), {EDGE_CORE})
            yield cloud, (f"edge (this process) on core {EDGE_CORE}, cloud (child, {cloud_threads} thread(s)) on "
                          f"core(s) {','.join(map(str, sorted(cores)))}" if pin
                          else f"none: cores {sorted(own_cores)} do not include {EDGE_CORE} and {CLOUD_CORE}")
    finally:
        if pin:
            pin_threads(os.getpid(), own_cores)
        torch.set_num_threads(own_threads)


def predictors(cloud_threads: int | None) -> tuple[LatencyPredictor, LatencyPredictor, int, str]:
    """(edge predictor, cloud predictor, the cloud's thread count, what was used). By default the
    cloud runs at the thread count its own profile (predictor/dataset/cloud) was made with and is
    predicted with that profile; a cloud at another count is predicted with whichever shipped
    profile was made at that count (the 1-thread one is the edge's)."""
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    cloud_profile_threads = int(cloud.meta.get("threads", 1))
    edge_profile_threads = int(edge.meta.get("threads", 1))
    threads = cloud_profile_threads if cloud_threads is None else cloud_threads
    if threads == cloud_profile_threads:
        return edge, cloud, threads, f"cloud: its own profile ({threads} threads); edge: edge profile x slowdown"
    if threads == edge_profile_threads:
        return edge, edge, threads, (f"cloud at {threads} thread(s): the edge's {threads}-thread profile "
                                     "(the cloud's own was made at another count); edge: edge profile x slowdown")
    return edge, cloud, threads, (f"cloud at {threads} threads with its own profile made at "
                                  f"{cloud_profile_threads} (a mismatch); edge: edge profile x slowdown")


@torch.no_grad()
def warm_up(model, x: torch.Tensor, port: int) -> None:
    """Both sides run the whole model before anything is timed (the first passes are the slowest)."""
    for _ in range(WARMUP_RUNS):
        model(x.clone())
    everything = model.prefix(0)  # the cloud runs the whole model
    sent = model.run_edge(x, everything)
    with CloudClient(HOST, port) as client:  # unpaced: only the cloud's compute matters here
        for _ in range(WARMUP_RUNS):
            client.infer_tensors(model.name, model.fingerprint, sent, cut=everything.wire_cut)


def geomean(values: Sequence[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile (q in [0, 1]) of a non-empty sequence."""
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


# ----------------------------------------------------------------------------- measuring

@dataclass(frozen=True)
class Candidate:
    partition: Partition
    origin: str                # cloud-only, edge-only, cut, boundary, prefix, random, chosen, none-plan, jpeg-upload
    prefix: int | None = None  # k when the edge runs the first k units of the execution order
    codec: str = "none"        # how its crossing tensors (at cut 0 maybe the image) are coded
    in_pool: bool = True       # may be the oracle: a plan the chosen one was allowed to use

    @property
    def edge_nodes(self) -> frozenset[str]:
        return self.partition.edge_nodes

    @property
    def key(self) -> tuple[frozenset[str], str]:
        """What makes two candidates the same plan: the nodes on the edge and the codec."""
        return self.partition.edge_nodes, self.codec


@dataclass
class Run:
    report: EdgeReport
    edge_runq_wait_ms: float   # this process's threads waiting for a core during the run
    cloud_runq_wait_ms: float  # the cloud's


@dataclass
class Measured:
    """What a CandidateBench measured: per candidate, its runs in round order (round r of every
    measured candidate is its r-th run); the skipped candidates."""
    runs: dict[int, list[Run]]
    skipped: list[int]

    def totals(self, i: int) -> list[float]:
        return [r.report.measured_ms.total for r in self.runs[i]]

    def median(self, i: int) -> float:
        return statistics.median(self.totals(i))


class CandidateBench:
    """One model on one link: runs any candidate (partition, codec) through the real cloud and
    measures them all alike (module docstring). `expected_top5`, when given, is checked on every
    answer of an exact codec; lossy ones count their top-1 agreement. With `source` the edge
    starts every run from the image file (x is then its tensor)."""

    def __init__(self, model: SplitModel, planner: Planner, x: torch.Tensor, client: CloudClient, link: Link,
                 edge_slowdown: float, cloud_pid: int, candidates: list[Candidate],
                 expected_top5: list[list] | None = None, source: ImageSource | None = None):
        self.model, self.planner, self.x, self.client, self.link = model, planner, x, client, link
        self.edge_slowdown, self.cloud_pid, self.source = edge_slowdown, cloud_pid, source
        self.candidates = candidates
        self.plans: list[Plan] = [planner.cost(c.partition, link, codec=c.codec) for c in candidates]
        self.expected_top5 = expected_top5
        self.runs = self.answers_ok = self.lossy_runs = self.lossy_top1_agree = 0
        self.edge_runq_wait_ms = self.cloud_runq_wait_ms = 0.0

    def answer_matches(self, top5: list[list]) -> bool:
        if self.expected_top5 is None:
            return True
        return ([c for c, _ in top5] == [c for c, _ in self.expected_top5]
                and all(math.isclose(p, q, rel_tol=ANSWER_RTOL) for (_, p), (_, q) in zip(top5, self.expected_top5)))

    def run(self, i: int) -> Run:
        waits = runqueue_wait_ms(os.getpid()), runqueue_wait_ms(self.cloud_pid)
        candidate = self.candidates[i]
        report = collaborative_inference(self.model, self.planner, self.x, self.client, self.link,
                                         partition=candidate.partition, edge_slowdown=self.edge_slowdown,
                                         source=self.source, codec=candidate.codec,
                                         slowdown_by_repeating=True)  # one edge per core: see run_slowed
        if report.fallback:  # a local run would be timed as if it were collaborative: never
            raise SystemExit(f"error: {self.model.name}, candidate {i}: the cloud failed: {report.fallback_reason}")
        run = Run(report, runqueue_wait_ms(os.getpid()) - waits[0], runqueue_wait_ms(self.cloud_pid) - waits[1])
        if report.lossy or self.plans[i].lossy:  # not held to local inference: its agreement counted apart
            self.lossy_runs += 1
            self.lossy_top1_agree += (self.expected_top5 is None
                                      or report.top5[0][0] == self.expected_top5[0][0])
        else:
            ok = self.answer_matches(report.top5)
            if not ok:
                log(f"    WRONG ANSWER at candidate {i} ({candidate.codec}): {report.top5} != {self.expected_top5}")
            self.answers_ok += ok
        self.runs += 1
        self.edge_runq_wait_ms += run.edge_runq_wait_ms
        self.cloud_runq_wait_ms += run.cloud_runq_wait_ms
        return run

    def floor_ms(self, i: int) -> float:
        """The least total the paced link allows candidate i: its coded bytes (the transfer frame is
        about that) at the link's rate, plus the RTT, when it sends anything."""
        plan = self.plans[i]
        if plan.partition.all_edge:
            return 0.0
        return send_ms(plan.coded_bytes, self.link.bandwidth_mbps) + self.link.rtt_ms

    def measure(self, forced: set[int], repeats: int, seed: int = 0,
                describe: Callable[[int], str] = str) -> Measured:
        """Screening pass, then `repeats` interleaved rounds (module docstring)."""
        order = sorted(range(len(self.candidates)), key=lambda i: (self.plans[i].total_ms, i))
        kept, skipped, best = [], [], math.inf
        for i in order:
            if i not in forced and self.floor_ms(i) > SKIP_MARGIN * best:
                skipped.append(i)
                continue
            total = self.run(i).report.measured_ms.total
            best = min(best, total)
            kept.append(i)
            log(f"    screen {describe(i)}: {total:9.1f} ms (best {best:.1f})")
        rng = random.Random(seed)
        runs: dict[int, list[Run]] = {i: [] for i in kept}
        for r in range(repeats):
            round_order = list(kept)
            rng.shuffle(round_order)
            for i in round_order:
                runs[i].append(self.run(i))
            log(f"    round {r + 1}/{repeats} done ({len(kept)} candidates)")
        return Measured(runs, skipped)

    def candidate_rows(self, measured: Measured) -> list[dict]:
        """One row per candidate (CANDIDATE_COLUMNS, plus the caller's own), in candidate order."""
        rows = []
        for i, plan in enumerate(self.plans):
            runs = measured.runs.get(i, [])
            row: dict = {"rtt_ms": self.link.rtt_ms, "phase": "measured" if runs else "skipped", "runs": len(runs),
                   "transfer_bytes": runs[0].report.transfer_bytes if runs else "",
                   "floor_ms": round(self.floor_ms(i), 3),
                   "predicted_edge_ms": round(plan.edge_ms, 3), "predicted_transfer_ms": round(plan.transfer_ms, 3),
                   "predicted_cloud_ms": round(plan.cloud_ms, 3), "predicted_total_ms": round(plan.total_ms, 3),
                   "codec": plan.codec, "in_oracle_pool": self.candidates[i].in_pool,
                   "lossy": runs[0].report.lossy if runs else plan.lossy, "predicted_coded_bytes": plan.coded_bytes,
                   "coded_bytes": runs[0].report.coded_bytes if runs else "",
                   "predicted_encode_ms": round(plan.encode_ms, 3), "predicted_decode_ms": round(plan.decode_ms, 3)}
            if runs:
                med = lambda f, runs=runs: statistics.median(f(r) for r in runs)  # noqa: E731
                totals = measured.totals(i)
                total = statistics.median(totals)
                row.update({"edge_ms": med(lambda r: r.report.measured_ms.edge),
                            "transfer_ms": med(lambda r: r.report.measured_ms.transfer),
                            "cloud_ms": med(lambda r: r.report.measured_ms.cloud), "total_ms": total,
                            "total_min_ms": min(totals), "total_max_ms": max(totals),
                            "overhead_ms": med(lambda r: r.report.overhead_ms),
                            "predicted_error_pct": 100 * (plan.total_ms - total) / total,
                            "edge_runq_wait_ms": med(lambda r: r.edge_runq_wait_ms),
                            "cloud_runq_wait_ms": med(lambda r: r.cloud_runq_wait_ms),
                            "encode_ms": med(lambda r: r.report.encode_ms),
                            "decode_ms": med(lambda r: r.report.decode_ms)})
                for key in ("edge_ms", "transfer_ms", "cloud_ms", "total_ms", "total_min_ms", "total_max_ms",
                            "overhead_ms", "predicted_error_pct", "edge_runq_wait_ms", "cloud_runq_wait_ms",
                            "encode_ms", "decode_ms"):
                    row[key] = round(row[key], 3)
            rows.append(row)
        return rows


def compare(measured: Measured, plans: list[Plan], chosen: int, edge_only: int, cloud_only: int,
            floors: list[float], rtt_ms: float, pool: set[int] | None = None, none_plan: int | None = None,
            jpeg90: int | None = None) -> dict:
    """The comparison row (COMPARISON_COLUMNS, CODEC_COMPARISON_COLUMNS) from one set of
    interleaved measurements. `pool`: the candidates the oracle is chosen from (the plans the
    chosen one was allowed to use; default all); `none_plan`: the plan chosen with codec none
    (default the chosen); `jpeg90`: the JPEG-upload baseline, if measured."""
    med = {i: measured.median(i) for i in measured.runs}
    eligible = [i for i in med if pool is None or i in pool]
    assert chosen in eligible, "the chosen plan is one the chosen plan was allowed to use"
    oracle = min(eligible, key=lambda i: (med[i], i))
    per_round = [c / o for c, o in zip(measured.totals(chosen), measured.totals(oracle))]
    endpoint = edge_only if med[edge_only] <= med[cloud_only] else cloud_only
    vs_endpoint = [e / c for e, c in zip(measured.totals(endpoint), measured.totals(chosen))]
    predicted = plans[chosen].total_ms
    none_plan = chosen if none_plan is None else none_plan
    row = {"oracle": oracle, "rtt_ms": rtt_ms, "rounds": len(measured.runs[chosen]), "chosen_is_oracle": oracle == chosen,
           "chosen_ms": round(med[chosen], 2), "oracle_ms": round(med[oracle], 2),
           "ratio": round(med[chosen] / med[oracle], 4),
           "ratio_p25": round(quantile(per_round, 0.25), 4), "ratio_p75": round(quantile(per_round, 0.75), 4),
           "ratio_min": round(min(per_round), 4), "ratio_max": round(max(per_round), 4),
           "edge_only_ms": round(med[edge_only], 2), "cloud_only_ms": round(med[cloud_only], 2),
           "speedup_vs_edge": round(med[edge_only] / med[chosen], 3),
           "speedup_vs_cloud": round(med[cloud_only] / med[chosen], 3),
           "best_endpoint": "edge-only" if endpoint == edge_only else "cloud-only",
           "vs_best_endpoint": round(med[endpoint] / med[chosen], 3),
           "vs_best_endpoint_min": round(min(vs_endpoint), 3), "vs_best_endpoint_max": round(max(vs_endpoint), 3),
           "predicted_chosen_ms": round(predicted, 2),
           "predicted_error_pct": round(100 * (predicted - med[chosen]) / med[chosen], 1),
           "measured": len(measured.runs), "skipped": len(measured.skipped),
           "skips_exact": all(floors[i] > med[oracle] for i in measured.skipped if pool is None or i in pool),
           "chosen_codec": plans[chosen].codec, "chosen_coded_bytes": measured.runs[chosen][0].report.coded_bytes,
           "oracle_codec": plans[oracle].codec, "oracle_pool": len(eligible),
           "none_plan_ms": round(med[none_plan], 2), "speedup_vs_none": round(med[none_plan] / med[chosen], 3),
           "jpeg90_ms": "", "chosen_over_jpeg90": "", "chosen_over_jpeg90_min": "", "chosen_over_jpeg90_max": ""}
    if jpeg90 is not None:
        over = [c / j for c, j in zip(measured.totals(chosen), measured.totals(jpeg90))]
        row.update({"jpeg90_ms": round(med[jpeg90], 2), "chosen_over_jpeg90": round(med[chosen] / med[jpeg90], 3),
                    "chosen_over_jpeg90_min": round(min(over), 3), "chosen_over_jpeg90_max": round(max(over), 3)})
    return row


def summarize(rows: list[dict], candidate_rows: list[dict]) -> dict:
    """Geomeans, worst ratio, speed-up over the plan chosen with codec none, chosen/jpeg90 (geomean
    and worst, over the rows that measured it), the answers, and the end-to-end prediction bias:
    (predicted - measured) / measured of the chosen candidates (rows) and of every measured
    candidate, and of each part (edge, transfer, cloud) over the measured candidates that have it;
    the median per-request overhead."""
    worst = max(rows, key=lambda r: r["ratio"])
    measured = [c for c in candidate_rows if c["phase"] == "measured"]

    def part_bias(pred: str, meas: str) -> float | str:
        errs = [100 * (c[pred] - c[meas]) / c[meas] for c in measured if c[meas] and c[meas] > 0]
        return round(statistics.median(errs), 1) if errs else ""

    chosen_err = [r["predicted_error_pct"] for r in rows]
    all_err = [c["predicted_error_pct"] for c in measured]
    with_jpeg = [r for r in rows if r.get("chosen_over_jpeg90", "") != ""]
    worst_jpeg = max(with_jpeg, key=lambda r: r["chosen_over_jpeg90"]) if with_jpeg else None
    runs = sum(r.get("runs", 0) for r in rows)
    lossy_runs = sum(r.get("lossy_runs", 0) for r in rows)
    # the jpeg90 floor means something only where the chosen plan could be lossy
    lossy_admitted = any(c.get("in_oracle_pool") is True and c.get("lossy") is True for c in candidate_rows)
    return {"cases": len(rows),
            "geomean_ratio": round(geomean([r["ratio"] for r in rows]), 4), "worst_ratio": worst["ratio"],
            "worst_case": f"{worst['model']} at {worst['bandwidth']}",
            "chosen_is_oracle": f"{sum(r['chosen_is_oracle'] for r in rows)}/{len(rows)}",
            "geomean_speedup_vs_edge": round(geomean([r["speedup_vs_edge"] for r in rows]), 3),
            "geomean_speedup_vs_cloud": round(geomean([r["speedup_vs_cloud"] for r in rows]), 3),
            "geomean_vs_best_endpoint": round(geomean([r["vs_best_endpoint"] for r in rows]), 3),
            "vs_best_endpoint_range": f"{min(r['vs_best_endpoint'] for r in rows)}-"
                                      f"{max(r['vs_best_endpoint'] for r in rows)}",
            "codec_mode": ";".join(sorted({str(r.get("codec_mode", "none")) for r in rows})),
            "accuracy_budget": max((float(r.get("accuracy_budget", 0.0)) for r in rows), default=0.0),
            "geomean_speedup_vs_none": round(geomean([r["speedup_vs_none"] for r in rows]), 3),
            "geomean_chosen_over_jpeg90": round(geomean([r["chosen_over_jpeg90"] for r in with_jpeg]), 3)
                                          if with_jpeg else "",
            "worst_chosen_over_jpeg90": worst_jpeg["chosen_over_jpeg90"] if worst_jpeg else "",
            "worst_jpeg90_case": f"{worst_jpeg['model']} at {worst_jpeg['bandwidth']}" if worst_jpeg else "",
            "jpeg90_cases": f"{len(with_jpeg)}/{len(rows)}", "lossy_admitted": lossy_admitted,
            "answers_ok": f"{sum(r.get('answers_ok', 0) for r in rows)}/{runs - lossy_runs}",
            "lossy_top1_agree": f"{sum(r.get('lossy_top1_agree', 0) for r in rows)}/{lossy_runs}",
            "chosen_pred_error_median_pct": round(statistics.median(chosen_err), 1),
            "chosen_pred_error_range_pct": f"{min(chosen_err)} to {max(chosen_err)}",
            "chosen_under_predicted": f"{sum(e < 0 for e in chosen_err)}/{len(chosen_err)}",
            "all_pred_error_median_pct": round(statistics.median(all_err), 1) if all_err else "",
            "all_pred_error_range_pct": f"{min(all_err)} to {max(all_err)}" if all_err else "",
            "edge_part_error_median_pct": part_bias("predicted_edge_ms", "edge_ms"),
            "transfer_part_error_median_pct": part_bias("predicted_transfer_ms", "transfer_ms"),
            "cloud_part_error_median_pct": part_bias("predicted_cloud_ms", "cloud_ms"),
            "overhead_median_ms": round(statistics.median(c["overhead_ms"] for c in measured), 2) if measured else "",
            # where the parts' excess over their predictions goes: time the side's threads waited
            # for a core (other processes on the machine), against the excess itself, ms
            "edge_excess_median_ms": _median_diff(measured, "edge_ms", "predicted_edge_ms"),
            "edge_runq_wait_median_ms": _median_of(measured, "edge_runq_wait_ms"),
            "cloud_excess_median_ms": _median_diff(measured, "cloud_ms", "predicted_cloud_ms"),
            "cloud_runq_wait_median_ms": _median_of(measured, "cloud_runq_wait_ms")}


def _median_diff(rows: list[dict], measured: str, predicted: str) -> float | str:
    values = [c[measured] - c[predicted] for c in rows if c[predicted] > 0]
    return round(statistics.median(values), 2) if values else ""


def _median_of(rows: list[dict], key: str) -> float | str:
    return round(statistics.median(c[key] for c in rows), 2) if rows else ""


def print_summary(s: dict, run_s: float) -> None:
    verdict = lambda value, target: "met" if value <= target else "MISSED"  # noqa: E731
    print(f"chosen = oracle in {s['chosen_is_oracle']} cases")
    print(f"chosen/oracle (over the plans the chosen one was allowed to use; same interleaved measurements): "
          f"geomean {s['geomean_ratio']:.3f} "
          f"({verdict(s['geomean_ratio'], TARGET_GEOMEAN_RATIO)} <= {TARGET_GEOMEAN_RATIO}), worst "
          f"{s['worst_ratio']:.3f} at {s['worst_case']} ({verdict(s['worst_ratio'], TARGET_WORST_RATIO)} "
          f"<= {TARGET_WORST_RATIO})")
    print(f"chosen vs the plan chosen with codec none (float32: today's cut) {s['geomean_speedup_vs_none']:.2f}x "
          f"(geomean; codec mode {s['codec_mode']}, accuracy budget {s['accuracy_budget']:g} points)")
    if s["geomean_chosen_over_jpeg90"] == "":
        print("no JPEG-upload baseline measured (--codec none, or no model here takes image codecs)")
    else:
        if s["accuracy_budget"] > 0 and s["lossy_admitted"]:
            floor = f"floor <= {TARGET_OVER_JPEG90}: {verdict(s['worst_chosen_over_jpeg90'], TARGET_OVER_JPEG90)}"
        else:
            floor = ("information only: " + ("at budget 0" if s["accuracy_budget"] == 0 else
                                             "the accuracy tables admitted none under this budget")
                     + f" no lossy codec may be chosen, so the <= {TARGET_OVER_JPEG90} floor is not judged")
        print(f"chosen / jpeg90 upload at cut 0 (same runs): geomean {s['geomean_chosen_over_jpeg90']:.3f}, worst "
              f"{s['worst_chosen_over_jpeg90']:.3f} at {s['worst_jpeg90_case']} over {s['jpeg90_cases']} cases "
              f"({floor})")
    print(f"answers: exact codecs equal to local inference in {s['answers_ok']} runs; lossy codecs' top-1 "
          f"equal to local inference in {s['lossy_top1_agree']} runs (not checked)")
    print(f"chosen vs edge-only {s['geomean_speedup_vs_edge']:.2f}x, vs cloud-only "
          f"{s['geomean_speedup_vs_cloud']:.2f}x, vs the better endpoint {s['geomean_vs_best_endpoint']:.2f}x "
          f"(range {s['vs_best_endpoint_range']}) (geomeans)")
    print(f"end-to-end prediction error (predicted - measured) / measured: chosen median "
          f"{s['chosen_pred_error_median_pct']}% (range {s['chosen_pred_error_range_pct']}, under-predicted in "
          f"{s['chosen_under_predicted']}); all measured candidates median {s['all_pred_error_median_pct']}% "
          f"(range {s['all_pred_error_range_pct']})")
    print(f"  by part (median over measured candidates): edge {s['edge_part_error_median_pct']}%, transfer "
          f"{s['transfer_part_error_median_pct']}%, cloud {s['cloud_part_error_median_pct']}%; per-request "
          f"overhead (total minus the parts) median {s['overhead_median_ms']} ms; run time {run_s:.0f} s")
    print(f"  excess over the prediction against time waiting for a core (medians, ms): edge "
          f"{s['edge_excess_median_ms']} vs {s['edge_runq_wait_median_ms']}, cloud {s['cloud_excess_median_ms']} "
          f"vs {s['cloud_runq_wait_median_ms']}")
