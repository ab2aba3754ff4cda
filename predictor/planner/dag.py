"""Predicted per-node latencies of a traced DAG model, and its min-cut partition at a link."""
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
from predictor.planner.dag_cut import DagCutSearch, DagNode, partition_cost
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
    """Predicted per-node latencies of a traced model; the best partition by one minimum cut."""
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
        self.codecs = CodecCosts(model.name, CodecTable.load("edge"), CodecTable.load("cloud"), edge_slowdown)

    def configure_codecs(self, allowed: Sequence[str], image: ImageInfo | None = None,
                         accuracy_budget: float = 0.0) -> None:
        self.codecs.configure(allowed, image, accuracy_budget)

    def unit_rows(self) -> list[dict]:
        names = list(self.model.nodes)[1:]  # names[0] is the input
        return [{"label": node_label(self.model, name), "edge_ms": self.nodes[name].edge_ms,
                 "cloud_ms": self.nodes[name].cloud_ms, "out_bytes": self.nodes[name].out_bytes} for name in names]

    def edge_only_ms(self) -> float:
        return sum(node.edge_ms for node in self.nodes.values())

    def cost(self, partition: Partition, link: Link, objective: Objective = LATENCY,
             codec: str | None = None) -> Plan:
        """The predicted cost of running `partition.edge_nodes` (the input among them) on the edge,
        every crossing tensor coded with `codec` (None: the allowed codec of least cost)."""
        plain = partition_cost(self.nodes, partition, link, objective, self.model.describe(partition)[0])
        if partition.all_edge:
            return replace(plain, edge_ms=plain.edge_ms + self.codecs.image_edge_ms())
        k = partition.cut_point
        choices = [codec] if codec is not None else list(self.codecs.codecs_at(k))
        plans = [self._coded(plain, c, k, link, objective) for c in choices or ["none"]]
        key = objective.weights()
        return min(plans, key=lambda p: _weighted(p, link, key))

    def _coded(self, plain: Plan, codec: str, k: int, link: Link, objective: Objective) -> Plan:
        # each crossing tensor at its node's measured ratio
        coding = self.codecs.coding(codec, k, plain.transfer_bytes,
                                    {node: self.nodes[node].out_bytes for node in plain.crossing})
        edge_ms = 0.0 if is_input_codec(codec) else plain.edge_ms + self.codecs.image_edge_ms()
        return plan_for(plain.partition, plain.label, edge_ms, plain.transfer_bytes,
                        plain.cloud_ms / link.cloud_load, link, objective, coding)

    def best(self, link: Link, objective: Objective = LATENCY) -> Plan:
        """The minimum cut on float32 bytes, then the best allowed codec for its tensors (the cut
        and the codec are not chosen jointly for DAGs)."""
        return self.cost(self.model.partition(self.search.best(link, objective).edge_nodes), link, objective)


def _weighted(plan: Plan, link: Link, weights: tuple[float, float, float]) -> float:
    w_edge, w_send, w_wait = weights
    rtt = link.rtt_ms if plan.crossing else 0.0
    return (w_edge * (plan.edge_ms + plan.encode_ms) + w_send * (plan.transfer_ms - rtt)
            + w_wait * (rtt + plan.cloud_ms + plan.decode_ms))
