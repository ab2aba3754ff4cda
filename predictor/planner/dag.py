"""Predicted per-node latencies of a traced DAG model, and its best partition and codec at a link:
one minimum cut per allowed tensor codec (the cut and the codec chosen jointly, as the chain scan
does), against sending the input with an input codec and keeping everything on the edge."""
from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import replace
from typing import cast

import torch
import torch.nn.functional as F

from models.dag import DagModel
from models.split import Partition
from net.wire.codecs import is_input_codec
from predictor.features import op_spec
from predictor.planner.base import Planner
from predictor.planner.codec_costs import CodecCosts, CodecTable, ImageInfo
from predictor.planner.dag_cut import CodecArcs, DagCutSearch, DagNode, objective_cost, partition_cost
from predictor.planner.values import LATENCY, Link, Objective, Plan, plan_for
from predictor.regression import LatencyPredictor

# Functional operations in the traced graphs, by the kind whose regression predicts them.
_ELEMENTWISE = {operator.add: "add", torch.add: "add", torch.cat: "cat", torch.relu: "relu",
                F.relu: "relu"}
_FREE = {torch.flatten}


def node_spec(model: DagModel, name: str, in_shape: tuple[int, ...] | None = None,
              out_shape: tuple[int, ...] | None = None) -> dict | None:
    """The spec the predictors take for node `name` (at the traced shapes unless given); None for
    a node that costs nothing."""
    node = model.fx_node(name)
    info = model.nodes[name]
    if node.op == "placeholder" or (node.op == "call_function" and node.target in _FREE):
        return None
    if node.op == "call_module":
        shape = in_shape or model.nodes[info.inputs[0]].out_shape
        return op_spec(model.graph_module.get_submodule(cast(str, node.target)), tuple(shape))  # fx: a module's name
    if node.op == "call_function" and node.target in _ELEMENTWISE:
        spec: dict = {"kind": _ELEMENTWISE[node.target], "in_shape": list(out_shape or info.out_shape)}
        if spec["kind"] == "relu":
            spec["inplace"] = bool(node.kwargs.get("inplace", False))
        return spec
    raise TypeError(f"no latency predictor for node {name} ({node.op} {node.target})")


def node_label(model: DagModel, name: str) -> str:
    """'Conv2d (layer1_0_conv1)' for a layer, 'add (add_3)' for a function: the kind first, as
    the chain models' unit labels, so the plot shortens both alike."""
    node = model.fx_node(name)
    if node.op == "call_module":
        kind = type(model.graph_module.get_submodule(cast(str, node.target))).__name__  # fx: a module's name
    else:
        kind = getattr(node.target, "__name__", str(node.target))
    return f"{kind} ({name})"


class DagPlanner(Planner):
    """Predicted per-node latencies of a traced model; the best partition and codec by one minimum
    cut per allowed tensor codec."""
    model: DagModel

    def __init__(self, model: DagModel, edge: LatencyPredictor, cloud: LatencyPredictor,
                 edge_slowdown: float = 1.0):
        self.model = model
        self.nodes: dict[str, DagNode] = {}
        for name, info in model.nodes.items():
            spec = node_spec(model, name)
            edge_ms = 0.0 if spec is None else edge_slowdown * edge.predict_op_ms(spec, info.out_shape)
            cloud_ms = 0.0 if spec is None else cloud.predict_op_ms(spec, info.out_shape)
            self.nodes[name] = DagNode(name, edge_ms, cloud_ms, info.out_bytes)
        self.edges = model.edges()
        self.search = DagCutSearch(self.nodes, self.edges, model.input_name)
        self.all_edge = model.partition(model.nodes)
        self.codecs = CodecCosts(model.name, CodecTable.load("edge"), CodecTable.load("cloud"), edge_slowdown,
                                 weights_fingerprint=lambda: model.fingerprint)
        self.configure_codecs(("none",))

    def configure_codecs(self, allowed: Sequence[str], image: ImageInfo | None = None,
                         accuracy_budget: float = 0.0) -> None:
        """Also makes each usable tensor codec's arcs for the minimum cut, once: a decision then
        only weighs them for its link."""
        self.codecs.configure(allowed, image, accuracy_budget)
        self._arcs = {codec: self._codec_arcs(codec) for codec in self.codecs.allowed
                      if not is_input_codec(codec) and self.codecs.admitted_at_every_cut(codec)}

    def _codec_arcs(self, codec: str) -> CodecArcs:
        # each node's output coded alone: CodecCosts.coding of several tensors is the sum of
        # these (fixed costs per tensor), so a cut's capacity is exactly what cost() charges its
        # partition (the cut point given is unused: a DAG's ratios are per node)
        codings = {name: self.codecs.coding(codec, 0, node.out_bytes, {name: node.out_bytes})
                   for name, node in self.nodes.items()}
        sent_bytes = {name: float(self.nodes[name].out_bytes if c.coded_bytes is None else c.coded_bytes)
                      for name, c in codings.items()}
        return self.search.codec_arcs(codec, sent_bytes, {n: c.encode_ms for n, c in codings.items()},
                                      {n: c.decode_ms for n, c in codings.items()}, self.codecs.image_edge_ms())

    def codecs_for(self, partition: Partition) -> tuple[str, ...]:
        """The allowed codecs that may code `partition`'s tensors, in the order allowed: the
        tensor codecs any partition may use (a lossy one only as CodecCosts.admitted_at_every_cut
        says), and at cut 0 the input codecs admitted there."""
        at_input = self.codecs.codecs_at(0) if partition.cut_point == 0 else ()
        return tuple(c for c in self.codecs.allowed if c in self._arcs or (is_input_codec(c) and c in at_input))

    def unit_rows(self) -> list[dict]:
        names = list(self.model.nodes)[1:]  # names[0] is the input
        return [{"label": node_label(self.model, name), "edge_ms": self.nodes[name].edge_ms,
                 "cloud_ms": self.nodes[name].cloud_ms, "out_bytes": self.nodes[name].out_bytes} for name in names]

    def edge_only_ms(self) -> float:
        """Every node on the edge, after decoding and preparing the image in hand (as cost() counts it)."""
        return sum(node.edge_ms for node in self.nodes.values()) + self.codecs.image_edge_ms()

    def cost(self, partition: Partition, link: Link, objective: Objective = LATENCY,
             codec: str | None = None) -> Plan:
        """The predicted cost of running `partition.edge_nodes` (the input among them) on the edge,
        every crossing tensor coded with `codec` (None: the allowed codec of least cost)."""
        plain = partition_cost(self.nodes, partition, link, objective, self.model.describe(partition)[0])
        if partition.all_edge:
            return replace(plain, edge_ms=plain.edge_ms + self.codecs.image_edge_ms())
        choices = [codec] if codec is not None else list(self.codecs_for(partition))
        plans = [self._coded(plain, c, partition.cut_point, link, objective) for c in choices or ["none"]]
        return min(plans, key=lambda p: objective_cost(p, link.rtt_ms, objective.weights()))

    def _coded(self, plain: Plan, codec: str, k: int, link: Link, objective: Objective) -> Plan:
        # each crossing tensor at its node's measured ratio
        coding = self.codecs.coding(codec, k, plain.transfer_bytes,
                                    {node: self.nodes[node].out_bytes for node in plain.crossing})
        edge_ms = 0.0 if is_input_codec(codec) else plain.edge_ms + self.codecs.image_edge_ms()
        return plan_for(plain.partition, plain.label, edge_ms, plain.transfer_bytes,
                        plain.cloud_ms / link.cloud_load, link, objective, coding)

    def best(self, link: Link, objective: Objective = LATENCY) -> Plan:
        """The (partition, codec) of least cost, chosen jointly: one minimum cut per allowed tensor
        codec, its arcs costing each tensor coded (DagCutSearch.cut, checked against cost()), and
        the input sent with each allowed input codec, and everything on the edge. Ties go to less
        work on the edge, then to `none`, then to the codec allowed first, as the chain scan's."""
        plans = [self.cost(self.all_edge, link, objective)]
        for codec, arcs in self._arcs.items():
            found = self.search.cut(link, objective, arcs)
            plan = self.cost(self.model.partition(found.edge_nodes), link, objective, codec)
            self.search.check(found, plan, link, objective)
            plans.append(plan)
        plans += [self.cost(self.model.prefix(0), link, objective, codec)
                  for codec in self.codecs_for(self.model.prefix(0)) if is_input_codec(codec)]
        order = {codec: i for i, codec in enumerate(self.codecs.allowed)}
        weights = objective.weights()
        return min(plans, key=lambda p: (objective_cost(p, link.rtt_ms, weights), p.cut_point,
                                         p.codec != "none", order.get(p.codec, -1)))
