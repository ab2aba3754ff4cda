"""The chain scan: the predicted cost of every cut k = 0..N of a chain, and the cheapest.

latency(k) = edge(units 1..k) + bytes(k) / bandwidth + RTT + cloud(units k+1..N), with no
transfer, no RTT and no cloud at k = N. The energy objective weighs the same three parts by the
edge's power in each (predictor.energy): compute x edge + radio x send + waiting x (RTT + cloud).
Per-unit predictions, byte counts and partitions are computed once per model, so a decision is
one pass over N+1 precomputed numbers: microseconds.
"""
from __future__ import annotations

from itertools import accumulate

from models import ChainModel
from models.split import Partition
from predictor.ops import ModelInfo, analyze
from predictor.planner.base import Planner
from predictor.planner.values import LATENCY, MS_PER_BYTE_AT_1_MBPS, Link, Objective, Plan, plan_for
from predictor.regression import LatencyPredictor


class ChainPlanner(Planner):
    """Predicted per-unit latencies of one chain on the edge and the cloud, ready for any link."""

    def __init__(self, model: ChainModel, edge: LatencyPredictor, cloud: LatencyPredictor,
                 edge_slowdown: float = 1.0, info: ModelInfo | None = None):
        self.model = model
        self.info = info or analyze(model)
        self.edge_unit_ms = [edge_slowdown * sum(edge.predict_op_ms(op.spec, op.out_shape) for op in u.ops)
                             for u in self.info.units]
        self.cloud_unit_ms = [sum(cloud.predict_op_ms(op.spec, op.out_shape) for op in u.ops)
                              for u in self.info.units]
        n = len(self.info.units)
        # edge_prefix_ms[k] = units 1..k on the edge; cloud_suffix_ms[k] = units k+1..N on the cloud
        self.edge_prefix_ms = [0.0, *accumulate(self.edge_unit_ms)]
        self.cloud_suffix_ms = [*accumulate(reversed(self.cloud_unit_ms), initial=0.0)][::-1]
        self.cut_bytes = [self.info.cut_bytes(k) for k in range(n + 1)]
        self.labels = ["input", *(u.label for u in self.info.units)]
        self.partitions: list[Partition] = [model.prefix(k) for k in range(n + 1)]
        # what a decision scans, per cut k < N: (edge ms, bytes sent, cloud ms)
        self._scan = tuple(zip(self.edge_prefix_ms[:n], self.cut_bytes, self.cloud_suffix_ms))

    @property
    def num_units(self) -> int:
        return len(self.info.units)

    def cost(self, partition: Partition, link: Link, objective: Objective = LATENCY) -> Plan:
        k = partition.cut_point
        return plan_for(self.partitions[k], self.labels[k], self.edge_prefix_ms[k], self.cut_bytes[k],
                        self.cloud_suffix_ms[k], link, objective)

    def cut(self, k: int, link: Link, objective: Objective = LATENCY) -> Plan:
        """The predicted cost of cut k (a chain's partitions are its cut points)."""
        n = self.num_units
        if not 0 <= k <= n:
            raise ValueError(f"cut point {k} is outside 0..{n} for {self.info.name}")
        return self.cost(self.partitions[k], link, objective)

    def best_cut_point(self, link: Link, objective: Objective = LATENCY) -> int:
        """argmin over k of the predicted latency (or modelled energy); ties go to the smaller k
        (less edge work)."""
        w_edge, w_send, w_wait = objective.weights()
        n = self.num_units
        # cost(k) = w_edge x edge + w_send x send + w_wait x (RTT + cloud), the factors folded once
        per_byte = w_send * MS_PER_BYTE_AT_1_MBPS / link.bandwidth_mbps
        wait_rtt, per_cloud_ms = w_wait * link.rtt_ms, w_wait * link.cloud_load
        best_k, best_cost = n, w_edge * self.edge_prefix_ms[n]
        for k, (edge_ms, nbytes, cloud_ms) in enumerate(self._scan):
            cost = w_edge * edge_ms + nbytes * per_byte + wait_rtt + per_cloud_ms * cloud_ms
            if cost < best_cost or (cost == best_cost and k < best_k):
                best_k, best_cost = k, cost
        return best_k

    def best(self, link: Link, objective: Objective = LATENCY) -> Plan:
        return self.cut(self.best_cut_point(link, objective), link, objective)

    def table(self, link: Link, objective: Objective = LATENCY) -> list[Plan]:
        return [self.cut(k, link, objective) for k in range(self.num_units + 1)]

    def unit_rows(self) -> list[dict]:
        return [{"label": self.labels[k], "edge_ms": self.edge_unit_ms[k - 1], "cloud_ms": self.cloud_unit_ms[k - 1],
                 "out_bytes": self.info.units[k - 1].out_bytes} for k in range(1, self.num_units + 1)]

    def edge_only_ms(self) -> float:
        return self.edge_prefix_ms[-1]
