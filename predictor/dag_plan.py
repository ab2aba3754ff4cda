"""Predicted per-node latencies of a traced DAG model, and its min-cut partition at a link."""
from __future__ import annotations

import operator

import torch
import torch.nn.functional as F

from models.dag import DagModel
from predictor.dag_cut import DagCutSearch, DagNode, DagPartition, partition_cost
from predictor.energy import EdgePower
from predictor.features import op_spec
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
        return op_spec(model.graph_module.get_submodule(node.target), tuple(shape))
    if node.op == "call_function" and node.target in _ELEMENTWISE:
        spec = {"kind": _ELEMENTWISE[node.target], "in_shape": list(out_shape or info.out_shape)}
        if spec["kind"] == "relu":
            spec["inplace"] = bool(node.kwargs.get("inplace", False))
        return spec
    raise TypeError(f"no latency predictor for node {name} ({node.op} {node.target})")


class DagPlanner:
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

    def edge_only_ms(self) -> float:
        return sum(node.edge_ms for node in self.nodes.values())

    def cloud_only_ms(self, bandwidth_mbps: float, rtt_ms: float = 0.0) -> float:
        return self.cost({self.model.input_name}, bandwidth_mbps, rtt_ms).total_ms

    def cost(self, edge_nodes, bandwidth_mbps: float, rtt_ms: float = 0.0, cloud_load: float = 1.0,
             power: EdgePower | None = None) -> DagPartition:
        """The predicted cost of running `edge_nodes` (the input is always among them) on the edge."""
        edge_nodes = {*edge_nodes, self.model.input_name}
        return partition_cost(self.nodes, self.edges, edge_nodes, bandwidth_mbps, rtt_ms, cloud_load, power)

    def best_partition(self, bandwidth_mbps: float, rtt_ms: float = 0.0, cloud_load: float = 1.0,
                       objective: str = "latency", power: EdgePower | None = None) -> DagPartition:
        return self.search.best(bandwidth_mbps, rtt_ms, cloud_load, objective, power)
