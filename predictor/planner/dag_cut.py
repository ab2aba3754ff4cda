"""The cut of a DAG model: which nodes run on the edge, found by a minimum s-t cut.

A partition puts each node on the edge or the cloud. The input starts on the edge, nothing flows
back from the cloud to the edge, and every tensor that crosses is sent once however many cloud
nodes read it. Its cost: edge latencies of the edge nodes + bytes crossing / bandwidth + RTT
(when anything crosses) + cloud latencies of the cloud nodes.

The graph for the cut (after DADS, Hu et al., INFOCOM 2019): source s is the edge, sink t the
cloud. s -> v costs v's cloud latency (cut when v runs on the cloud), v -> t its edge latency
(cut when v runs on the edge). A tensor produced by u goes through an auxiliary node u*:
u -> u* costs its transfer time, u* -> v is infinite for every consumer v, so the transfer is
paid once when any consumer is on the cloud side. v -> u is infinite too: a cloud node cannot
feed an edge node. The input node is tied to s. The RTT is a constant paid by any partition that
sends something, so the best is the cheaper of the min cut + RTT and everything on the edge.
The energy objective weighs the same capacities by the edge's powers (predictor.energy); the
cloud's reported load scales the cloud latencies.

A tensor codec changes only the u -> u* arcs: sending u's output coded (its coded bytes / bandwidth,
+ encoding it on the edge, + decoding it on the cloud, each tensor paying the codec's fixed costs)
instead of as float32. A `CodecArcs` holds one codec's per-arc parts, made once when the codecs are
configured; the input's edge arc also carries what every partition pays on the edge first (the
image's preprocessing), so the flow equals the plan's whole cost.

The graph's shape depends only on the model, so a `DagCutSearch` builds it once and each
decision only refills the capacities and runs SciPy's maximum flow (Dinic, compiled), whose
capacities are integers: costs are scaled so that the all-on-the-edge cost is 2^28 units
(rounding error below 1e-8 of it per edge) and the partition is re-costed exactly in floats.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_array
from scipy.sparse.csgraph import breadth_first_order, maximum_flow

from models.split import Partition
from predictor.planner.values import LATENCY, Link, Objective, Plan, plan_for, send_ms


@dataclass(frozen=True)
class DagNode:
    name: str
    edge_ms: float
    cloud_ms: float
    out_bytes: int  # bytes of this node's output tensor on the wire


def graph_partition(nodes: dict[str, DagNode], edges: Iterable[tuple[str, str]], edge_nodes: Iterable[str]) -> Partition:
    """The partition of a plain graph (nodes, edges) that runs `edge_nodes` on the edge; the
    crossing tensors sorted by name (a model's own partitions list them in traced order)."""
    on_edge = frozenset(edge_nodes)
    crossing = tuple(sorted({u for u, v in edges if u in on_edge and v not in on_edge}))
    return Partition(len(on_edge) - 1, len(nodes) - 1, on_edge, crossing)


def partition_cost(nodes: dict[str, DagNode], partition: Partition, link: Link,
                   objective: Objective = LATENCY, label: str = "") -> Plan:
    """The cost of running `partition.edge_nodes` on the edge and the rest on the cloud (any
    partition, valid or not: `is_valid` says which)."""
    nbytes = sum(nodes[u].out_bytes for u in partition.crossing)
    edge_ms = sum(nodes[n].edge_ms for n in partition.edge_nodes)
    cloud_ms = sum(node.cloud_ms for name, node in nodes.items() if name not in partition.edge_nodes)
    return plan_for(partition, label, edge_ms, nbytes, cloud_ms, link, objective)


def is_valid(edges: Iterable[tuple[str, str]], edge_nodes: Iterable[str], source: str) -> bool:
    """The input is on the edge and no cloud node feeds an edge node."""
    on_edge = set(edge_nodes)
    return source in on_edge and not any(u not in on_edge and v in on_edge for u, v in edges)


def objective_cost(p: Plan, rtt_ms: float, weights: tuple[float, float, float]) -> float:
    """The plan's cost for an objective's weights: encoding is edge compute, decoding waiting."""
    w_edge, w_send, w_wait = weights
    rtt = rtt_ms if p.crossing else 0.0
    return (w_edge * (p.edge_ms + p.encode_ms) + w_send * (p.transfer_ms - rtt)
            + w_wait * (rtt + p.cloud_ms + p.decode_ms))


# Integer capacities: the all-on-the-edge cost maps to 2^28 units, "infinite" is 2^30; SciPy's
# flow is int32, and no flow can exceed the all-on-the-edge cut.
_SCALE_UNITS = 2 ** 28
_INFINITE = 2 ** 30


@dataclass(frozen=True)
class CodecArcs:
    """One codec's part of every arc's capacity, per arc (0 on the arcs it does not touch):
    edge ms (a node's compute, an output's encoding, and on the input's arc what every partition
    pays first), cloud ms unloaded (a node's compute, an output's decoding), bytes sent."""
    codec: str
    edge_ms: np.ndarray
    cloud_ms: np.ndarray
    send_bytes: np.ndarray
    all_edge_ms: float  # the all-on-the-edge cut: no minimum cut costs more


@dataclass(frozen=True)
class MinCut:
    """A minimum cut's edge side and its cost in objective units without the RTT (the maximum
    flow), and the rounding its integer capacities allow."""
    edge_nodes: frozenset[str]
    flow_value: float
    tolerance: float


class DagCutSearch:
    """The min-cut graph of one DAG, built once; `best` answers one link/objective/load."""

    def __init__(self, nodes: dict[str, DagNode], edges: Iterable[tuple[str, str]], source: str):
        self.nodes, self.edges, self.source = nodes, sorted(set(edges)), source
        names = list(nodes)
        index = {name: 2 + i for i, name in enumerate(names)}  # 0 = s (the edge), 1 = t (the cloud)
        producers = sorted({u for u, _ in self.edges})
        aux = {u: 2 + len(names) + i for i, u in enumerate(producers)}
        self.num_vertices = 2 + len(names) + len(producers)
        self.names = names
        tails: list[int] = []
        heads: list[int] = []
        kinds: list[str] = []
        refs: list[int] = []

        def arc(u: int, v: int, kind: str, ref: int = -1) -> None:
            tails.append(u)
            heads.append(v)
            kinds.append(kind)
            refs.append(ref)

        for i, name in enumerate(names):  # s -> v: v's cloud cost; v -> t: v's edge cost
            arc(0, index[name], "inf" if name == source else "cloud", i)
            arc(index[name], 1, "edge", i)
        for u in producers:  # u -> u*: u's transfer, paid once; u* -> readers and reader -> u infinite
            arc(index[u], aux[u], "send", names.index(u))
        for u, v in self.edges:
            arc(aux[u], index[v], "inf")
            arc(index[v], index[u], "inf")
        self.tails, self.heads = np.array(tails), np.array(heads)
        self.arc_kinds, self.arc_refs = np.array(kinds), np.array(refs)
        self.source_edge_arc = 2 * names.index(source) + 1  # the input's v -> t arc
        self.infinite = self.arc_kinds == "inf"
        self.plain = self.codec_arcs("none", {n: float(node.out_bytes) for n, node in nodes.items()})

    def codec_arcs(self, codec: str, send_bytes: Mapping[str, float], encode_ms: Mapping[str, float] | None = None,
                   decode_ms: Mapping[str, float] | None = None, edge_fixed_ms: float = 0.0) -> CodecArcs:
        """The arcs' parts when every producer's output is sent as `send_bytes[node]`, encoded in
        `encode_ms[node]` on the edge and decoded in `decode_ms[node]` (unloaded) on the cloud,
        and every partition first pays `edge_fixed_ms` on the edge."""
        names, kinds, refs = self.names, self.arc_kinds, self.arc_refs

        def on(kind: str, values: Iterable[float]) -> np.ndarray:  # per node -> on the arcs of `kind`
            return np.where(kinds == kind, np.array(list(values), dtype=float)[refs], 0.0)

        def of(values: Mapping[str, float] | None) -> list[float]:
            return [0.0 if values is None else values.get(n, 0.0) for n in names]

        node_edge_ms = [self.nodes[n].edge_ms for n in names]
        edge_ms = on("edge", node_edge_ms) + on("send", of(encode_ms))
        edge_ms[self.source_edge_arc] += edge_fixed_ms
        cloud_ms = on("cloud", [self.nodes[n].cloud_ms for n in names]) + on("send", of(decode_ms))
        return CodecArcs(codec, edge_ms, cloud_ms, on("send", of(send_bytes)), sum(node_edge_ms) + edge_fixed_ms)

    def arc_costs(self, bandwidth_mbps: float, cloud_load: float, weights: tuple[float, float, float],
                  arcs: CodecArcs | None = None) -> np.ndarray:
        """Each arc's capacity (inf for the infinite ones) at this link, load and objective, the
        tensors sent as `arcs` says (default: float32, uncoded)."""
        arcs = arcs or self.plain
        w_edge, w_send, w_wait = weights
        cost = (w_edge * arcs.edge_ms + w_wait * cloud_load * arcs.cloud_ms
                + w_send * arcs.send_bytes * send_ms(1, bandwidth_mbps))
        return np.where(self.infinite, np.inf, cost)

    def partition_cost(self, edge_nodes: Iterable[str], link: Link, objective: Objective = LATENCY) -> Plan:
        return partition_cost(self.nodes, graph_partition(self.nodes, self.edges, edge_nodes), link, objective)

    def best(self, link: Link, objective: Objective = LATENCY) -> Plan:
        """The valid partition of least predicted latency (or modelled energy), tensors uncoded."""
        all_edge = self.partition_cost(self.nodes, link, objective)
        found = self.cut(link, objective)
        best = self.partition_cost(found.edge_nodes, link, objective)
        self.check(found, best, link, objective)
        # ties go to the partition with less work on the edge, as the chain scan's do
        weights = objective.weights()
        cheaper = objective_cost(all_edge, link.rtt_ms, weights) < objective_cost(best, link.rtt_ms, weights)
        return all_edge if cheaper else best

    def check(self, found: MinCut, plan: Plan, link: Link, objective: Objective = LATENCY) -> None:
        """That `plan`, the cut's partition costed by its planner (coded as the arcs were), is
        valid and costs what the maximum flow does (max-flow = min-cut: the arcs model the cost)."""
        if not is_valid(self.edges, plan.edge_nodes, self.source):
            raise RuntimeError(f"the minimum cut gave an invalid partition of {sorted(plan.edge_nodes)}")
        weights = objective.weights()
        cut_cost = objective_cost(plan, link.rtt_ms, weights) - (weights[2] * link.rtt_ms if plan.crossing else 0.0)
        if not math.isclose(cut_cost, found.flow_value, rel_tol=1e-6, abs_tol=found.tolerance):
            raise RuntimeError(f"min-cut partition costs {cut_cost}, the maximum flow {found.flow_value}")

    def cut(self, link: Link, objective: Objective = LATENCY, arcs: CodecArcs | None = None) -> MinCut:
        """The minimum cut at this link and objective, the tensors sent as `arcs` says (default:
        float32): its edge side (the fewest nodes among equal cuts) and its cost without the RTT."""
        arcs = arcs or self.plain
        bound = objective.weights()[0] * arcs.all_edge_ms  # the all-on-the-edge cut: no min cut costs more
        if bound <= 0:  # everything on the edge costs nothing
            return MinCut(frozenset(self.nodes), 0.0, 0.0)
        cost = self.arc_costs(link.bandwidth_mbps, link.cloud_load, objective.weights(), arcs)
        scale = _SCALE_UNITS / bound
        # an arc dearer than 2x the bound is in no minimum cut: clamping it keeps int32 safe
        units = np.rint(np.minimum(cost, 2 * bound) * scale).astype(np.int64)
        units[self.infinite] = _INFINITE
        n = self.num_vertices
        capacity = csr_array((units.astype(np.int32), (self.tails, self.heads)), shape=(n, n))
        result = maximum_flow(capacity, 0, 1)
        flow = np.asarray(result.flow[self.tails, self.heads]).ravel()  # on each arc (no duplicates)
        # the source side: reachable from s in the residual graph (capacity left forward, or flow to undo)
        forward, backward = units > flow, flow > 0
        rows = np.concatenate([self.tails[forward], self.heads[backward]])
        cols = np.concatenate([self.heads[forward], self.tails[backward]])
        residual = csr_array((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
        reached = breadth_first_order(residual, 0, directed=True, return_predecessors=False)
        names = self.names
        edge_side = frozenset(names[v - 2] for v in reached.tolist() if 2 <= v < 2 + len(names))
        return MinCut(edge_side, result.flow_value / scale, len(units) / scale)


def min_cut_partition(nodes: dict[str, DagNode], edges: Iterable[tuple[str, str]], source: str,
                      link: Link, objective: Objective = LATENCY) -> Plan:
    """The cheapest valid partition, by one minimum s-t cut (builds the graph; a DagCutSearch
    kept by the caller builds it once)."""
    return DagCutSearch(nodes, edges, source).best(link, objective)
