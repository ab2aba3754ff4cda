"""The partition search: predicted cost of every cut k = 0..N, and the cheapest.

latency(k) = edge(units 1..k) + bytes(k) / bandwidth + RTT + cloud(units k+1..N), with no
transfer, no RTT and no cloud at k = N. The energy objective weighs the same three parts by the
edge's power in each (predictor.energy): compute x edge + radio x send + waiting x (RTT + cloud).
Per-unit predictions and byte counts are computed once per model (a `Planner`), so a decision is
one pass over N+1 precomputed numbers: microseconds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import accumulate

from models import ChainModel
from predictor.energy import OBJECTIVES, EdgePower
from predictor.ops import ModelInfo, analyze
from predictor.regression import LatencyPredictor

BITS_PER_BYTE = 8
# Mbit/s is 10^6 bit/s; 1 ms = 1e-3 s: ms = bytes * 8 / (mbps * 1e6) * 1e3 = bytes * 8e-3 / mbps.
MS_PER_BYTE_AT_1_MBPS = BITS_PER_BYTE * 1e-3


def transfer_ms(nbytes: int, bandwidth_mbps: float) -> float:
    return nbytes * MS_PER_BYTE_AT_1_MBPS / bandwidth_mbps


@dataclass(frozen=True)
class Cut:
    cut_point: int          # the edge runs units 1..cut_point
    layer: str              # label of unit cut_point ("input" at 0)
    edge_ms: float
    transfer_ms: float      # includes the RTT when something is sent
    cloud_ms: float
    total_ms: float
    transfer_bytes: int
    energy_mj: float | None = None  # the edge's modelled energy, when a power table was given

    def as_dict(self) -> dict:
        return asdict(self)


class Planner:
    """Predicted per-unit latencies of one model on the edge and the cloud, ready for any link."""

    def __init__(self, info: ModelInfo, edge: LatencyPredictor, cloud: LatencyPredictor,
                 edge_slowdown: float = 1.0):
        self.info = info
        self.edge_unit_ms = [edge_slowdown * sum(edge.predict_op_ms(op.spec, op.out_shape) for op in u.ops)
                             for u in info.units]
        self.cloud_unit_ms = [sum(cloud.predict_op_ms(op.spec, op.out_shape) for op in u.ops)
                              for u in info.units]
        n = len(info.units)
        # edge_prefix_ms[k] = units 1..k on the edge; cloud_suffix_ms[k] = units k+1..N on the cloud
        self.edge_prefix_ms = [0.0, *accumulate(self.edge_unit_ms)]
        self.cloud_suffix_ms = [*accumulate(reversed(self.cloud_unit_ms), initial=0.0)][::-1]
        self.cut_bytes = [info.cut_bytes(k) for k in range(n + 1)]
        self.labels = ["input", *(u.label for u in info.units)]
        # what a decision scans, per cut k < N: (edge ms, bytes sent, cloud ms)
        self._scan = tuple(zip(self.edge_prefix_ms[:n], self.cut_bytes, self.cloud_suffix_ms))

    @classmethod
    def for_model(cls, model: ChainModel, edge: LatencyPredictor, cloud: LatencyPredictor,
                  edge_slowdown: float = 1.0) -> "Planner":
        return cls(analyze(model), edge, cloud, edge_slowdown)

    @property
    def num_units(self) -> int:
        return len(self.info.units)

    def cut(self, k: int, bandwidth_mbps: float, rtt_ms: float = 0.0, cloud_load: float = 1.0,
            power: EdgePower | None = None) -> Cut:
        """The predicted cost of cut k. cloud_load scales the cloud's unloaded predictions: the
        load factor the cloud reports (1 = idle; 2 = its requests take twice as long). With a
        `power`, the cut carries its modelled edge energy too."""
        n = self.num_units
        if not 0 <= k <= n:
            raise ValueError(f"cut point {k} is outside 0..{n} for {self.info.name}")
        edge_ms = self.edge_prefix_ms[k]
        if k == n:
            energy = None if power is None else power.energy_mj(edge_ms, 0.0, 0.0)
            return Cut(k, self.labels[k], edge_ms, 0.0, 0.0, edge_ms, 0, energy)
        send_ms = transfer_ms(self.cut_bytes[k], bandwidth_mbps)
        cloud_ms = cloud_load * self.cloud_suffix_ms[k]
        energy = None if power is None else power.energy_mj(edge_ms, send_ms, rtt_ms + cloud_ms)
        net_ms = send_ms + rtt_ms
        return Cut(k, self.labels[k], edge_ms, net_ms, cloud_ms, edge_ms + net_ms + cloud_ms,
                   self.cut_bytes[k], energy)

    def table(self, bandwidth_mbps: float, rtt_ms: float = 0.0, cloud_load: float = 1.0,
              power: EdgePower | None = None) -> list[Cut]:
        check_link(bandwidth_mbps, rtt_ms, cloud_load)
        return [self.cut(k, bandwidth_mbps, rtt_ms, cloud_load, power) for k in range(self.num_units + 1)]

    def best_cut_point(self, bandwidth_mbps: float, rtt_ms: float = 0.0, cloud_load: float = 1.0,
                       objective: str = "latency", power: EdgePower | None = None) -> int:
        """argmin over k of the predicted latency (or modelled energy); ties go to the smaller k
        (less edge work)."""
        check_link(bandwidth_mbps, rtt_ms, cloud_load)
        w_edge, w_send, w_wait = objective_weights(objective, power)
        n = self.num_units
        # cost(k) = w_edge x edge + w_send x send + w_wait x (RTT + cloud), the factors folded once
        per_byte = w_send * MS_PER_BYTE_AT_1_MBPS / bandwidth_mbps
        wait_rtt, per_cloud_ms = w_wait * rtt_ms, w_wait * cloud_load
        best_k, best_cost = n, w_edge * self.edge_prefix_ms[n]
        for k, (edge_ms, nbytes, cloud_ms) in enumerate(self._scan):
            cost = w_edge * edge_ms + nbytes * per_byte + wait_rtt + per_cloud_ms * cloud_ms
            if cost < best_cost or (cost == best_cost and k < best_k):
                best_k, best_cost = k, cost
        return best_k

    def best_cut(self, bandwidth_mbps: float, rtt_ms: float = 0.0, cloud_load: float = 1.0,
                 objective: str = "latency", power: EdgePower | None = None) -> Cut:
        k = self.best_cut_point(bandwidth_mbps, rtt_ms, cloud_load, objective, power)
        return self.cut(k, bandwidth_mbps, rtt_ms, cloud_load, power)

    def edge_only_ms(self) -> float:
        return self.edge_prefix_ms[-1]

    def cloud_only_ms(self, bandwidth_mbps: float, rtt_ms: float = 0.0) -> float:
        return self.cut(0, bandwidth_mbps, rtt_ms).total_ms


def objective_weights(objective: str, power: EdgePower | None) -> tuple[float, float, float]:
    """Cost per ms of edge compute, of sending, of waiting (RTT + cloud): 1, 1, 1 for latency
    (cost in ms); the edge's powers for energy (cost in mJ)."""
    if objective == "latency":
        return 1.0, 1.0, 1.0
    if objective == "energy":
        if power is None:
            raise ValueError("the energy objective needs the edge's power figures (an EdgePower)")
        return power.weights()
    raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")


def check_link(bandwidth_mbps: float, rtt_ms: float, cloud_load: float = 1.0) -> None:
    if not bandwidth_mbps > 0:
        raise ValueError(f"bandwidth must be a positive number of Mbit/s, got {bandwidth_mbps}")
    if not rtt_ms >= 0:
        raise ValueError(f"RTT must be >= 0 ms, got {rtt_ms}")
    if not cloud_load > 0:
        raise ValueError(f"the cloud's load factor must be > 0, got {cloud_load}")
