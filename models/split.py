"""The split-model interface: everything the planner, the edge's runner and the cloud need of a
model, whatever its shape. A chain (models/chain.py) is a DAG shaped like a path; a traced graph
(models/dag.py) is the general case. Both implement `SplitModel`, and a `Partition` says which
part of either runs on the edge.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass

import torch

# Every tensor on the wire is float32 (the protocol carries dtype and shape; codecs come later).
WIRE_DTYPE = "float32"


class PartitionError(ValueError):
    """A request whose partition or tensors do not fit the model. `code` is the protocol's error
    code for it: "bad_cut" (no such partition) or "bad_tensor" (wrong tensors for it)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Partition:
    """Which part of a model runs on the edge: the value the planner returns, the runner runs,
    the protocol carries and the reports print.

    cut_point: the number of units (chain) or computing nodes (DAG) on the edge, 0..num_units;
    edge_nodes: the edge side by name, the input included;
    crossing: the names of the tensors sent to the cloud, in order (empty when all is on the edge);
    wire_cut: the "cut" field of the request (a chain's k), or None when the tensors' names say it.
    """
    cut_point: int
    num_units: int
    edge_nodes: frozenset[str]
    crossing: tuple[str, ...]
    wire_cut: int | None = None

    @property
    def all_edge(self) -> bool:
        """Everything runs on the edge: no connection, no transfer."""
        return self.cut_point == self.num_units


class SplitModel(ABC):
    """A model that can run any of its partitions: the edge part, then the cloud part from the
    tensors that cross. Edge then cloud is bitwise equal to the whole model (tested)."""

    name: str
    input_shape: tuple[int, ...]

    @property
    @abstractmethod
    def num_units(self) -> int:
        """Units (or computing nodes) a partition distributes: cut points run 0..num_units."""

    @property
    @abstractmethod
    def num_classes(self) -> int: ...

    @property
    @abstractmethod
    def fingerprint(self) -> str:
        """16 hex digits identifying the weights; equal weights give equal fingerprints."""

    @property
    def is_path(self) -> bool:
        """True when every unit reads only the previous one's output: a partition is then a
        number k, and a scan over k finds the best one (a DAG needs a minimum cut)."""
        return False

    @abstractmethod
    def prefix(self, k: int) -> Partition:
        """The first k units in execution order on the edge (always a valid partition).
        ValueError when k is outside 0..num_units."""

    @abstractmethod
    def run_edge(self, x: torch.Tensor, partition: Partition) -> dict[str, torch.Tensor]:
        """Run the edge side on input x: the crossing tensors by name, or, when the partition
        puts everything on the edge, the model's output as the only entry."""

    @abstractmethod
    def run_cloud(self, tensors: dict[str, torch.Tensor], partition: Partition) -> torch.Tensor:
        """Run the cloud side from the crossing tensors; the model's output."""

    @abstractmethod
    def unit_outputs(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """Run the whole model on x, yielding each unit's (node's) output in execution order:
        for timing prefixes in real passes."""

    @abstractmethod
    def expected_tensors(self, partition: Partition) -> dict[str, tuple[int, ...]]:
        """The shape of each crossing tensor (all float32), by name, in crossing order."""

    @abstractmethod
    def partition_from_request(self, wire_cut: object, names: list[str]) -> Partition:
        """The partition a request describes by its "cut" field and the names of its tensors.
        PartitionError when it describes none."""

    @abstractmethod
    def describe(self, partition: Partition) -> tuple[str, list[str] | None]:
        """(a human label of the cut, the crossing tensors to list in a report or None when
        the label says it all)."""

    def check_request(self, wire_cut: object, entries: list[dict]) -> Partition:
        """The partition of a request, checked against its declared tensors (name, dtype,
        shape) before any of their bytes are read. PartitionError otherwise."""
        partition = self.partition_from_request(wire_cut, [e["name"] for e in entries])
        expected = self.expected_tensors(partition)
        got = {e["name"]: (e["dtype"], list(e["shape"])) for e in entries}
        want = {name: (WIRE_DTYPE, list(shape)) for name, shape in expected.items()}
        if got != want:
            shown = [(e["name"], e["dtype"], e["shape"]) for e in entries][:4]
            raise PartitionError("bad_tensor", f"{self.name} at cut {partition.cut_point} takes "
                                               f"{_describe_tensors(want)}, got {shown!r:.200}")
        return partition

    @torch.no_grad()
    def forward_whole(self, x: torch.Tensor) -> torch.Tensor:
        """The whole model on x (the local answer a split must equal)."""
        return self.run_edge(x, self.prefix(self.num_units))[self.output_key]

    @property
    def output_key(self) -> str:
        """The name `run_edge` gives the model's output when everything runs on the edge."""
        return "output"

    def warm_up(self, device: torch.device | str = "cpu") -> None:
        """One whole pass (the first forward is the slowest) and the fingerprint (hashing
        VGG16-BN's weights takes ~0.5 s): before any clock starts."""
        self.forward_whole(torch.zeros(self.input_shape, device=device))
        _ = self.fingerprint


def _describe_tensors(want: dict) -> str:
    parts = [f"{name!r:.60} {dtype} {shape}" for name, (dtype, shape) in list(want.items())[:4]]
    more = f" and {len(want) - 4} more" if len(want) > 4 else ""
    return ", ".join(parts) + more
