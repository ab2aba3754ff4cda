"""One collaborative inference, edge side: pick the cut, run units 1..k, let the cloud finish.

Measured times mean the same everywhere: edge = units 1..k here (with the emulated slowdown);
cloud = units k+1..N as the cloud reports it; transfer = wall time from the first byte sent to
the last byte of the reply, minus the cloud's compute; total = wall time from the input tensor
being ready to the answer; overhead = total minus the three parts.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import torch

from models import ChainModel
from models.dag import DagModel
from net.edge_client import CloudClient, CloudUnavailable, InferReply
from predictor import Planner
from predictor.dag_plan import DagPlanner
from predictor.energy import EdgePower
from utils.classes import top_k


CLOUD_RETRIES = 1


@dataclass
class Times:
    edge: float = 0.0
    transfer: float = 0.0
    cloud: float = 0.0
    total: float = 0.0


@dataclass
class EdgeReport:
    model: str
    cut_point: int
    num_units: int
    cut_layer: str
    bandwidth_mbps: float | None  # None: the cloud was unreachable before it could be measured
    rtt_ms: float
    cloud_load: float  # the cloud's load factor the decision used (1 = unloaded)
    transfer_bytes: int
    predicted_ms: Times
    measured_ms: Times
    top5: list[list]
    fallback: bool = False
    fallback_reason: str | None = None
    retries: int = 0  # requests sent again on a new connection before the cloud answered
    crossing: list[str] | None = None  # DAG models: the nodes whose outputs were sent
    overhead_ms: float = 0.0
    objective: str = "latency"  # what the cut was chosen for
    # The edge's modelled energy (mJ), when its network's powers are known: "predicted" from the
    # predicted times, "from_measured_times" from the measured ones (the powers stay modelled).
    energy_mj: dict | None = None
    logits: torch.Tensor | None = field(default=None, repr=False)

    def to_json_dict(self) -> dict:
        d = asdict(self)
        d.pop("logits")
        if d["crossing"] is None:  # chain models: the cut point says it all
            d.pop("crossing")
        if d["energy_mj"] is not None:
            d["energy_mj"] = {k: round(v, 4) for k, v in d["energy_mj"].items()}
        for key in ("predicted_ms", "measured_ms"):
            d[key] = {k: round(v, 4) for k, v in d[key].items()}
        d["overhead_ms"] = round(d["overhead_ms"], 4)
        return d


@torch.no_grad()
def run_units(units, x: torch.Tensor, slowdown: float = 1.0) -> torch.Tensor:
    """Run `units` in order; with slowdown F, then wait as an edge device F times slower than
    this machine would have taken (emulation). The wait comes after the whole part, not after
    each unit: waiting between units left the core cold and made the next units run up to 35%
    slower here, which would have emulated a slower device than asked for."""
    started = slowdown_clock()
    for unit in units:
        x = unit(x)
    emulate_slowdown(started, slowdown)
    return x


def slowdown_clock() -> tuple[float, float]:
    """(wall, CPU time of this thread) now: where an emulated edge part starts."""
    return time.perf_counter(), time.thread_time()


def emulate_slowdown(started: tuple[float, float], slowdown: float) -> None:
    """Wait until F x the CPU time this thread used since `started` has passed since then: the
    work took F times as long on the emulated edge. CPU time, not wall time, so that time spent
    waiting for a core (other edges or processes on this machine) is not stretched F times: 16
    emulated edges sharing a core were measured ~17x slower than asked under the wall-time rule.
    The edge runs torch at 1 thread, in this thread; with more threads their CPU time is not
    this thread's, and the wall time is used."""
    if slowdown <= 1.0:
        return
    wall0, cpu0 = started
    spent = time.perf_counter() - wall0 if torch.get_num_threads() > 1 else time.thread_time() - cpu0
    time.sleep(max(0.0, wall0 + slowdown * spent - time.perf_counter()))


def ask_cloud(client: CloudClient, model: str, fingerprint: str, tensors: dict[str, torch.Tensor],
              cut: int | None = None, want_logits: bool = False) -> tuple[InferReply | None, str | None, int]:
    """(reply, None, retries) from the cloud, or (None, why not, retries) when it is unavailable.
    A failed request is sent once more on a new connection before the edge gives up: behind a
    load balancer the new connection reaches a live backend (requests are idempotent)."""
    reason = None
    for attempt in range(1 + CLOUD_RETRIES):
        try:
            return client.infer_tensors(model, fingerprint, tensors, want_logits, cut=cut), None, attempt
        except CloudUnavailable as e:
            reason = str(e)
    return None, reason, CLOUD_RETRIES


def collaborative_inference(model: ChainModel, planner: Planner, x: torch.Tensor,
                            client: CloudClient | None, bandwidth_mbps: float | None, rtt_ms: float = 0.0,
                            partition: int | None = None, edge_slowdown: float = 1.0,
                            want_logits: bool = False, unavailable: str | None = None,
                            objective: str = "latency", power: EdgePower | None = None) -> EdgeReport:
    """Infer `x` split between this device and the cloud behind `client`.

    The cut is `partition` if given, else the planner's best for `objective` at this bandwidth
    and RTT (`power`: the edge's powers, needed for energy, reported whenever given). When the
    cloud is unavailable (`client` is None, `unavailable` says why) the edge runs everything;
    when it fails mid-request the edge finishes the rest itself. Either way the report says
    `fallback` with the reason. The planner must carry the same slowdown.
    """
    n = len(model)
    cloud_load = client.cloud_load if client is not None else 1.0  # from the cloud's last reply
    if client is None:
        k = n
    else:
        k = (planner.best_cut_point(bandwidth_mbps, rtt_ms, cloud_load, objective, power)
             if partition is None else partition)
    predicted = planner.cut(k, bandwidth_mbps, rtt_ms, cloud_load, power)
    measured = Times()
    fallback_reason = unavailable if client is None else None
    transfer_bytes = retries = 0

    t_ready = time.perf_counter()
    y = run_units(model[:k], x, edge_slowdown)
    measured.edge = (time.perf_counter() - t_ready) * 1e3
    logits, top5 = y, None
    if k < n:
        reply, fallback_reason, retries = ask_cloud(client, model.name, model.fingerprint, {"x": y}, k, want_logits)
        if reply is not None:
            logits, top5, transfer_bytes = reply.logits, reply.top5, reply.transfer_bytes
            measured.transfer, measured.cloud = reply.transfer_ms, reply.cloud_ms
        else:  # finish here what the cloud would have run
            t0 = time.perf_counter()
            logits = run_units(model[k:], y, edge_slowdown)
            measured.edge += (time.perf_counter() - t0) * 1e3
    measured.total = (time.perf_counter() - t_ready) * 1e3

    return EdgeReport(
        model=model.name, cut_point=k, num_units=n, cut_layer=predicted.layer,
        bandwidth_mbps=bandwidth_mbps, rtt_ms=rtt_ms, cloud_load=cloud_load, transfer_bytes=transfer_bytes,
        predicted_ms=Times(predicted.edge_ms, predicted.transfer_ms, predicted.cloud_ms, predicted.total_ms),
        measured_ms=measured, top5=top5 or top_k(logits), fallback=fallback_reason is not None,
        fallback_reason=fallback_reason, retries=retries,
        overhead_ms=measured.total - measured.edge - measured.transfer - measured.cloud,
        objective=objective, energy_mj=_energy(power, predicted.energy_mj, measured, rtt_ms),
        logits=logits if want_logits else None)


def dag_collaborative_inference(model: DagModel, planner: DagPlanner, x: torch.Tensor,
                                client: CloudClient | None, bandwidth_mbps: float | None,
                                rtt_ms: float = 0.0, edge_nodes: set[str] | None = None,
                                edge_slowdown: float = 1.0, want_logits: bool = False,
                                unavailable: str | None = None, objective: str = "latency",
                                power: EdgePower | None = None) -> EdgeReport:
    """`collaborative_inference` for a DAG model: the edge runs `edge_nodes` (default: the
    min-cut partition), sends every tensor that crosses in one request, the cloud the rest.
    `cut_point` is the number of nodes on the edge; `crossing` lists the nodes sent."""
    names = list(model.nodes)
    cloud_load = client.cloud_load if client is not None else 1.0  # from the cloud's last reply
    if client is None:
        edge_nodes = set(names)
    elif edge_nodes is None:
        edge_nodes = planner.best_partition(bandwidth_mbps, rtt_ms, cloud_load, objective, power).edge_nodes
    edge_nodes = set(edge_nodes) | {model.input_name}
    predicted = planner.cost(edge_nodes, bandwidth_mbps or 1.0, rtt_ms, cloud_load, power)
    measured = Times()
    fallback_reason = unavailable if client is None else None
    transfer_bytes = retries = 0

    t_ready = time.perf_counter()
    started = slowdown_clock()
    sent = model.run_edge(x, edge_nodes)
    emulate_slowdown(started, edge_slowdown)
    measured.edge = (time.perf_counter() - t_ready) * 1e3
    all_edge = model.output_name in sent
    logits, top5 = sent.get(model.output_name), None
    if not all_edge:
        reply, fallback_reason, retries = ask_cloud(client, model.name, model.fingerprint, sent,
                                                    want_logits=want_logits)
        if reply is not None:
            logits, top5, transfer_bytes = reply.logits, reply.top5, reply.transfer_bytes
            measured.transfer, measured.cloud = reply.transfer_ms, reply.cloud_ms
        else:  # finish here what the cloud would have run
            t0, started = time.perf_counter(), slowdown_clock()
            logits = model.run_cloud(sent)
            emulate_slowdown(started, edge_slowdown)
            measured.edge += (time.perf_counter() - t0) * 1e3
    measured.total = (time.perf_counter() - t_ready) * 1e3
    crossing = [] if all_edge else list(sent)
    return EdgeReport(
        model=model.name, cut_point=len(edge_nodes) - 1, num_units=len(names) - 1,
        cut_layer=f"sends {', '.join(crossing)}" if crossing else "all on the edge",
        bandwidth_mbps=bandwidth_mbps, rtt_ms=rtt_ms, cloud_load=cloud_load, transfer_bytes=transfer_bytes,
        predicted_ms=Times(predicted.edge_ms, predicted.transfer_ms, predicted.cloud_ms, predicted.total_ms),
        measured_ms=measured, top5=top5 or top_k(logits), fallback=fallback_reason is not None,
        fallback_reason=fallback_reason, retries=retries, crossing=crossing,
        overhead_ms=measured.total - measured.edge - measured.transfer - measured.cloud,
        objective=objective, energy_mj=_energy(power, predicted.energy_mj, measured, rtt_ms),
        logits=logits if want_logits else None)


def _energy(power: EdgePower | None, predicted_mj: float | None, measured: Times, rtt_ms: float) -> dict | None:
    """Predicted energy, and the same power model applied to the measured times, charged as the
    prediction charges them: the transfer less one RTT at the radio's sending power; the RTT,
    the cloud's part and any overhead at the waiting power."""
    if power is None:
        return None
    sending_ms = max(0.0, measured.transfer - rtt_ms) if measured.transfer else 0.0
    waiting_ms = measured.total - measured.edge - sending_ms
    return {"predicted": predicted_mj,
            "from_measured_times": power.energy_mj(measured.edge, sending_ms, waiting_ms)}
