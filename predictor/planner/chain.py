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
from net.wire.codecs import INPUT_CODECS
from predictor.ops import ModelInfo, analyze
from predictor.planner.base import Planner
from predictor.planner.codec_costs import CodecCosts, CodecTable, ImageInfo
from predictor.planner.values import LATENCY, MS_PER_BYTE_AT_1_MBPS, Coding, Link, Objective, Plan, plan_for
from predictor.regression import LatencyPredictor


class ChainPlanner(Planner):
    """Predicted per-unit latencies of one chain on the edge and the cloud, ready for any link."""

    def __init__(self, model: ChainModel, edge: LatencyPredictor, cloud: LatencyPredictor,
                 edge_slowdown: float = 1.0, info: ModelInfo | None = None,
                 codec_tables: tuple[CodecTable | None, CodecTable | None] | None = None):
        """codec_tables: the edge's and the cloud's (default: loaded for each role, if any)."""
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
        tables = codec_tables if codec_tables is not None else (CodecTable.load("edge"), CodecTable.load("cloud"))
        self.codecs = CodecCosts(model.name, *tables, edge_slowdown=edge_slowdown,
                                 weights_fingerprint=lambda: model.fingerprint)
        self.configure_codecs(("none",))

    def configure_codecs(self, allowed, image: ImageInfo | None = None, accuracy_budget: float = 0.0) -> None:
        self.codecs.configure(allowed, image, accuracy_budget)
        n = len(self.info.units)
        image_ms = self.codecs.image_edge_ms()
        # per (cut, codec): the Coding, and what a decision scans: (k, codec, edge ms incl. the
        # image's preprocessing and the encoding, bytes sent, cloud ms incl. decoding)
        self._coding: dict[tuple[int, str], Coding] = {}
        scan = []
        for k in range(n):
            for codec in self.codecs.codecs_at(k):
                coding = self.codecs.coding(codec, k, self.cut_bytes[k])
                self._coding[k, codec] = coding
                edge_ms = coding.encode_ms + (0.0 if codec in INPUT_CODECS else image_ms + self.edge_prefix_ms[k])
                coded = self.cut_bytes[k] if coding.coded_bytes is None else coding.coded_bytes
                scan.append((k, codec, edge_ms, coded, coding.decode_ms + self.cloud_suffix_ms[k]))
        self._scan = tuple(scan)
        self._image_ms = image_ms

    @property
    def num_units(self) -> int:
        return len(self.info.units)

    def cost(self, partition: Partition, link: Link, objective: Objective = LATENCY,
             codec: str | None = None) -> Plan:
        k = partition.cut_point
        if k == self.num_units:  # nothing is sent: no codec
            return plan_for(self.partitions[k], self.labels[k], self._image_ms + self.edge_prefix_ms[k], 0, 0.0,
                            link, objective)
        if codec is None:
            codec = self.best_codec(k, link, objective)
        coding = self._coding.get((k, codec))
        if coding is None:
            coding = self.codecs.coding(codec, k, self.cut_bytes[k])
        edge_ms = 0.0 if codec in INPUT_CODECS else self._image_ms + self.edge_prefix_ms[k]
        return plan_for(self.partitions[k], self.labels[k], edge_ms, self.cut_bytes[k],
                        self.cloud_suffix_ms[k], link, objective, coding)

    def cut(self, k: int, link: Link, objective: Objective = LATENCY, codec: str | None = None) -> Plan:
        """The predicted cost of cut k (a chain's partitions are its cut points), with `codec` or
        the best allowed one there."""
        n = self.num_units
        if not 0 <= k <= n:
            raise ValueError(f"cut point {k} is outside 0..{n} for {self.info.name}")
        return self.cost(self.partitions[k], link, objective, codec)

    def best_codec(self, k: int, link: Link, objective: Objective = LATENCY) -> str:
        """The allowed codec of least cost at cut k (`none` where none applies)."""
        choices = [row for row in self._scan if row[0] == k]
        if not choices:
            return "none"
        return self._argmin(choices, link, objective, (k, "none", float("inf")))[1]

    def best_cut_point(self, link: Link, objective: Objective = LATENCY) -> int:
        """argmin over k of the predicted latency (or modelled energy); ties go to the smaller k
        (less edge work)."""
        return self.best_cut_and_codec(link, objective)[0]

    def best_cut_and_codec(self, link: Link, objective: Objective = LATENCY) -> tuple[int, str]:
        """argmin over (k, codec) of the predicted latency (or modelled energy); ties go to the
        smaller k (less edge work), then to the codec listed first."""
        n = self.num_units
        all_edge = (n, "none", objective.weights()[0] * (self._image_ms + self.edge_prefix_ms[n]))
        k, codec, _ = self._argmin(self._scan, link, objective, all_edge)
        return k, codec

    @staticmethod
    def _argmin(scan, link: Link, objective: Objective, start: tuple[int, str, float]) -> tuple[int, str, float]:
        w_edge, w_send, w_wait = objective.weights()
        # cost = w_edge x edge + w_send x send + w_wait x (RTT + cloud), the factors folded once
        per_byte = w_send * MS_PER_BYTE_AT_1_MBPS / link.bandwidth_mbps
        wait_rtt, per_cloud_ms = w_wait * link.rtt_ms, w_wait * link.cloud_load
        best_k, best_codec, best_cost = start
        for k, codec, edge_ms, nbytes, cloud_ms in scan:
            cost = w_edge * edge_ms + nbytes * per_byte + wait_rtt + per_cloud_ms * cloud_ms
            if cost < best_cost or (cost == best_cost and k < best_k):
                best_k, best_codec, best_cost = k, codec, cost
        return best_k, best_codec, best_cost

    def best(self, link: Link, objective: Objective = LATENCY) -> Plan:
        k, codec = self.best_cut_and_codec(link, objective)
        return self.cut(k, link, objective, codec)

    def table(self, link: Link, objective: Objective = LATENCY) -> list[Plan]:
        return [self.cut(k, link, objective) for k in range(self.num_units + 1)]

    def unit_rows(self) -> list[dict]:
        return [{"label": self.labels[k], "edge_ms": self.edge_unit_ms[k - 1], "cloud_ms": self.cloud_unit_ms[k - 1],
                 "out_bytes": self.info.units[k - 1].out_bytes} for k in range(1, self.num_units + 1)]

    def edge_only_ms(self) -> float:
        return self._image_ms + self.edge_prefix_ms[-1]
