"""DAG models (ResNet-18, GoogLeNet) as graphs traced by torch.fx: nodes are layers and the
functional operations between them (add, concatenation, flatten, ...), edges are tensors.

A partition runs a set of nodes on the edge, closed under their inputs; the outputs of edge
nodes read by cloud nodes cross to the cloud, each once. `run_edge` and `run_cloud` execute the
two sides op by op in the traced order, the same calls the traced module makes, so their
composition is bitwise equal to the whole model (tested).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torchvision.models import googlenet, resnet18

from models.chain import INPUT_SHAPE, weights_fingerprint
from models.split import Partition, PartitionError, SplitModel

DAG_SEED = 0


def _googlenet() -> nn.Module:
    # the auxiliary classifiers only run in training; inference has no use for them
    return googlenet(weights=None, aux_logits=False, init_weights=True)


_DAG_REGISTRY = {"res_net": lambda: resnet18(weights=None), "google_net": _googlenet}
DAG_MODEL_NAMES: tuple[str, ...] = tuple(_DAG_REGISTRY)


@dataclass(frozen=True)
class DagNodeInfo:
    name: str
    inputs: tuple[str, ...]     # names of the nodes whose outputs this node reads
    out_shape: tuple[int, ...]
    out_bytes: int


class DagModel(SplitModel):
    """A traced model: its graph, each node's output shape, and partitioned execution."""

    def __init__(self, name: str, module: nn.Module):
        self.name = name
        self.module = module.eval()
        self.graph_module = _without_inplace(fx.symbolic_trace(self.module))
        self.input_shape = INPUT_SHAPE
        with torch.no_grad():
            ShapeProp(self.graph_module).propagate(torch.zeros(INPUT_SHAPE))
        graph_nodes = list(self.graph_module.graph.nodes)
        self._fx_nodes = {n.name: n for n in graph_nodes}
        self.input_name = next(n.name for n in graph_nodes if n.op == "placeholder")
        output = next(n for n in graph_nodes if n.op == "output")
        self.output_name = output.args[0].name
        self.nodes: dict[str, DagNodeInfo] = {}
        for node in graph_nodes:
            if node.op == "output":
                continue
            meta = node.meta["tensor_meta"]
            inputs = tuple(a.name for a in node.all_input_nodes)
            nbytes = meta.shape.numel() * torch.empty((), dtype=meta.dtype).element_size()
            self.nodes[node.name] = DagNodeInfo(node.name, inputs, tuple(meta.shape), nbytes)
        self._fingerprint: str | None = None

    def to(self, device: str | torch.device) -> DagModel:
        self.module.to(device)
        self.graph_module.to(device)
        return self

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.graph_module(x)

    def __len__(self) -> int:
        """Nodes that compute (the input is not one): a partition puts 0..len of them on the edge."""
        return len(self.nodes) - 1

    @property
    def num_units(self) -> int:
        return len(self)

    @property
    def num_classes(self) -> int:
        return self.nodes[self.output_name].out_shape[-1]

    def prefix(self, k: int) -> Partition:
        """The first k computing nodes in traced order, and the input: always a valid edge side
        (a node's inputs come before it)."""
        if type(k) is not int or not 0 <= k <= len(self):
            raise ValueError(f"cut point {k} is outside 0..{len(self)} for {self.name}")
        return self.partition(list(self.nodes)[:k + 1])

    def partition(self, edge_nodes: Iterable[str]) -> Partition:
        """The partition that runs `edge_nodes` (and the input) on the edge."""
        on_edge = frozenset(edge_nodes) | {self.input_name}
        crossing = () if self.output_name in on_edge else tuple(self.crossing(on_edge))
        return Partition(len(on_edge) - 1, len(self), on_edge, crossing)

    @torch.no_grad()
    def unit_outputs(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        env = {self.input_name: x}
        for name in list(self.nodes)[1:]:
            env[name] = self.eval_node(self._fx_nodes[name], env)
            yield env[name]

    def expected_tensors(self, partition: Partition) -> dict[str, tuple[int, ...]]:
        return {name: self.nodes[name].out_shape for name in partition.crossing}

    def partition_from_request(self, wire_cut: object, names: list[str]) -> Partition:
        """The tensors of a DAG request: node outputs that cut the input off; the edge side is
        every node the cloud does not need to compute."""
        if wire_cut is not None:
            raise PartitionError("bad_cut", f"{self.name}: a DAG request names its tensors, not a cut")
        if not names:
            raise PartitionError("bad_tensor", f"a {self.name} request sends at least one node's output")
        unknown = [name for name in names if name not in self.nodes]
        if unknown:
            raise PartitionError("bad_tensor", f"{self.name}: tensor {unknown[0]!r:.60} is not a node of the model")
        if self.output_name in names:
            raise PartitionError("bad_cut", f"{self.name}: the edge computed the output; nothing to run")
        try:
            needed = self.needed_nodes(set(names))
        except ValueError as e:
            raise PartitionError("bad_cut", f"{self.name}: {e}") from None
        on_edge = frozenset(self.nodes) - needed
        order = [name for name in self.nodes if name in set(names)]
        return Partition(len(on_edge) - 1, len(self), on_edge, tuple(order))

    def describe(self, partition: Partition) -> tuple[str, list[str] | None]:
        crossing = list(partition.crossing)
        return (f"sends {', '.join(crossing)}" if crossing else "all on the edge"), crossing

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.module.state_dict().values())
        return self._fingerprint

    def edges(self) -> list[tuple[str, str]]:
        return [(u, v.name) for v in self.nodes.values() for u in v.inputs]

    def fx_node(self, name: str) -> fx.Node:
        return self._fx_nodes[name]

    def eval_node(self, node: fx.Node, env: dict[str, torch.Tensor]) -> torch.Tensor:
        args = fx.node.map_arg(node.args, lambda n: env[n.name])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n.name])
        # fx: the target is a callable for call_function, a name (str) for the other ops
        if node.op == "call_module":
            return self.graph_module.get_submodule(cast(str, node.target))(*args, **kwargs)
        if node.op == "call_function":
            return cast(Callable[..., torch.Tensor], node.target)(*args, **kwargs)
        if node.op == "call_method":
            return getattr(args[0], cast(str, node.target))(*args[1:], **kwargs)
        if node.op == "get_attr":
            return getattr(self.graph_module, cast(str, node.target))
        raise ValueError(f"cannot run node {node.name} ({node.op})")

    def crossing(self, edge_nodes: Iterable[str]) -> list[str]:
        """Edge nodes whose outputs a cloud node reads, in graph order."""
        on_edge = set(edge_nodes)
        read_by_cloud = {u for v in self.nodes.values() if v.name not in on_edge for u in v.inputs}
        return [n for n in self.nodes if n in on_edge and n in read_by_cloud]

    @torch.no_grad()
    def run_edge(self, x: torch.Tensor, partition: Partition) -> dict[str, torch.Tensor]:
        """Run the edge nodes on input x; return the tensors that cross (by node name), or the
        model's output when every node is on the edge."""
        on_edge = partition.edge_nodes
        env = {self.input_name: x}
        for name in self.nodes:
            if name in on_edge and name != self.input_name:
                env[name] = self.eval_node(self._fx_nodes[name], env)
        if self.output_name in on_edge:
            return {self.output_key: env[self.output_name]}
        return {name: env[name] for name in partition.crossing}

    @torch.no_grad()
    def run_cloud(self, tensors: dict[str, torch.Tensor], partition: Partition | None = None) -> torch.Tensor:
        """Run every node the output still needs, given the crossing tensors by node name (the
        tensors say which nodes those are: the partition is not needed)."""
        provided = tensors
        env = dict(provided)
        needed = self.needed_nodes(set(provided))
        for name in self.nodes:
            if name in needed:
                env[name] = self.eval_node(self._fx_nodes[name], env)
        return env[self.output_name]

    def needed_nodes(self, provided: set[str]) -> set[str]:
        """Nodes to compute on the cloud: ancestors of the output not cut off by `provided`.
        ValueError when the output needs the model's input (an invalid set of tensors)."""
        needed, stack = set(), [self.output_name]
        while stack:
            name = stack.pop()
            if name in provided or name in needed:
                continue
            if name == self.input_name:
                raise ValueError("these tensors do not cut the model off its input")
            needed.add(name)
            stack.extend(self.nodes[name].inputs)
        return needed


def _without_inplace(graph_module: fx.GraphModule) -> fx.GraphModule:
    """The same computation with every in-place activation made out-of-place. Split execution
    runs the edge's nodes before any cloud node; an in-place op there could change a tensor a
    cloud node should read as it was. The values are identical either way."""
    for module in graph_module.modules():
        if getattr(module, "inplace", False):
            module.inplace = False  # type: ignore[assignment]  # torch types module attributes as Tensor | Module
    for node in graph_module.graph.nodes:
        if node.kwargs.get("inplace"):
            node.kwargs = {**node.kwargs, "inplace": False}
    graph_module.recompile()
    return graph_module


def get_dag_model(name: str, weights: str | Path | None = None) -> DagModel:
    if name not in _DAG_REGISTRY:
        raise ValueError(f"unknown DAG model {name!r}; valid: {', '.join(DAG_MODEL_NAMES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DAG_SEED)
        module = _DAG_REGISTRY[name]()
    from models.weights import load_state_dict  # noqa: PLC0415  (models.weights imports the registry's modules)
    state = load_state_dict(name, weights)  # a file, "imagenet" (torchvision's), or None: seeded
    if state is not None:
        module.load_state_dict(state)
    return DagModel(name, module)
