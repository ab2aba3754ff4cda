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
This module is the search only; tracing models into such graphs is the DAG-models issue's work.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import networkx as nx

from predictor.partition import transfer_ms


@dataclass(frozen=True)
class DagNode:
    name: str
    edge_ms: float
    cloud_ms: float
    out_bytes: int  # bytes of this node's output tensor on the wire


@dataclass(frozen=True)
class DagPartition:
    edge_nodes: frozenset[str]
    crossing: tuple[str, ...]  # nodes whose outputs are sent to the cloud
    transfer_bytes: int
    edge_ms: float
    transfer_ms: float  # includes the RTT when something is sent
    cloud_ms: float

    @property
    def total_ms(self) -> float:
        return self.edge_ms + self.transfer_ms + self.cloud_ms


def partition_cost(nodes: dict[str, DagNode], edges: Iterable[tuple[str, str]], edge_nodes: Iterable[str],
                   bandwidth_mbps: float, rtt_ms: float = 0.0) -> DagPartition:
    """The cost of running `edge_nodes` on the edge and the rest on the cloud (any partition,
    valid or not: `is_valid` says which)."""
    on_edge = frozenset(edge_nodes)
    crossing = sorted({u for u, v in edges if u in on_edge and v not in on_edge})
    nbytes = sum(nodes[u].out_bytes for u in crossing)
    sent_ms = transfer_ms(nbytes, bandwidth_mbps) + rtt_ms if crossing else 0.0
    return DagPartition(on_edge, tuple(crossing), nbytes,
                        sum(nodes[n].edge_ms for n in on_edge), sent_ms,
                        sum(node.cloud_ms for name, node in nodes.items() if name not in on_edge))


def is_valid(edges: Iterable[tuple[str, str]], edge_nodes: Iterable[str], source: str) -> bool:
    """The input is on the edge and no cloud node feeds an edge node."""
    on_edge = set(edge_nodes)
    return source in on_edge and not any(u not in on_edge and v in on_edge for u, v in edges)


def _source_side(graph: nx.DiGraph, flow: dict, s) -> set:
    """Nodes reachable from s in the residual graph of a maximum flow: the minimum cut's source
    side. Computed here from the flow: networkx's own minimum_cut returned the right value with
    a source side that did not achieve it on graphs like these (networkx 3.6.1)."""
    reached, stack = {s}, [s]
    while stack:
        u = stack.pop()
        for v, data in graph.succ[u].items():  # forward residual: capacity left
            capacity = data.get("capacity", math.inf)
            if v not in reached and (capacity == math.inf or flow[u][v] < capacity * (1 - 1e-9) - 1e-12):
                reached.add(v)
                stack.append(v)
        for p in graph.pred[u]:  # backward residual: flow that could be pushed back
            if p not in reached and flow[p][u] > 1e-12:
                reached.add(p)
                stack.append(p)
    return reached


def min_cut_partition(nodes: dict[str, DagNode], edges: list[tuple[str, str]], source: str,
                      bandwidth_mbps: float, rtt_ms: float = 0.0) -> DagPartition:
    """The cheapest valid partition, by one minimum s-t cut (networkx)."""
    if not bandwidth_mbps > 0:
        raise ValueError(f"bandwidth must be a positive number of Mbit/s, got {bandwidth_mbps}")
    s, t = ("s",), ("t",)  # tuples cannot collide with node names, which are strings
    graph = nx.DiGraph()  # an edge without a capacity attribute is infinite to networkx
    for name, node in nodes.items():
        if name == source:
            graph.add_edge(s, name)
        else:
            graph.add_edge(s, name, capacity=node.cloud_ms)
        graph.add_edge(name, t, capacity=node.edge_ms)
    consumers: dict[str, list[str]] = {}
    for u, v in edges:
        consumers.setdefault(u, []).append(v)
    for u, readers in consumers.items():
        aux = ("sent", u)
        graph.add_edge(u, aux, capacity=transfer_ms(nodes[u].out_bytes, bandwidth_mbps))
        for v in readers:
            graph.add_edge(aux, v)
            graph.add_edge(v, u)  # infinite: v on the edge forces u on the edge
    cut_ms, flow = nx.maximum_flow(graph, s, t)
    edge_side = _source_side(graph, flow, s)
    best = partition_cost(nodes, edges, (n for n in edge_side if n in nodes), bandwidth_mbps, 0.0)
    if not math.isclose(best.total_ms, cut_ms, rel_tol=1e-6, abs_tol=1e-6):  # max-flow = min-cut
        raise RuntimeError(f"min-cut partition costs {best.total_ms} ms, the maximum flow {cut_ms} ms")
    best = partition_cost(nodes, edges, best.edge_nodes, bandwidth_mbps, rtt_ms)
    all_edge = partition_cost(nodes, edges, nodes, bandwidth_mbps, rtt_ms)
    return all_edge if all_edge.total_ms <= best.total_ms else best
