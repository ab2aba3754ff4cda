"""A DNN as an ordered chain of partitionable units.

A unit is a leaf layer (conv, batch-norm, activation, pool, linear, dropout, flatten), except that
a block with a skip connection (every MobileNetV2 InvertedResidual) is one unit. The edge runs
units 1..k, the cloud runs units k+1..N; k = 0 is all cloud, k = N is all edge.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import nn

from models.split import Partition, PartitionError, SplitModel

# The input of the ImageNet models: one RGB image at the torchvision reference resolution. A model
# may take another (fashion_net: one 28x28 grey image): each chain carries its own input_shape.
INPUT_SHAPE = (1, 3, 224, 224)
# The name of the one tensor a chain sends: the output of unit k (the input at k = 0).
CHAIN_TENSOR = "x"


class ChainModel(nn.Sequential, SplitModel):
    """nn.Sequential of units that remembers each unit's qualified name in the source model."""

    def __init__(self, name: str, units: Sequence[nn.Module], unit_names: Sequence[str],
                 input_shape: tuple[int, ...] = INPUT_SHAPE):
        super().__init__(*units)
        if len(units) != len(unit_names):
            raise ValueError("one name per unit")
        self.name = name
        self.unit_names = list(unit_names)
        self.input_shape = tuple(input_shape)
        self._fingerprint: str | None = None
        self._out_shapes: list[tuple[int, ...]] | None = None

    def __getitem__(self, idx):
        if isinstance(idx, slice):  # slices are plain sub-chains, not named models
            return nn.Sequential(*list(self._modules.values())[idx])
        return super().__getitem__(idx)

    @property
    def num_classes(self) -> int:
        """Outputs of the classifier: every chain here ends with its Linear layer."""
        return self[-1].out_features

    def unit_label(self, k: int) -> str:
        """Human label of unit k (1-based, as in 'the edge runs units 1..k'); 0 is the input."""
        if k == 0:
            return "input"
        unit = self[k - 1]
        return f"{type(unit).__name__} ({self.unit_names[k - 1]})"

    @property
    def fingerprint(self) -> str:
        """16 hex digits identifying the weights; equal weights give equal fingerprints."""
        if self._fingerprint is None:
            self._fingerprint = weights_fingerprint(self.state_dict().values())
        return self._fingerprint

    # -- the split-model interface (models/split.py) -------------------------------------------
    @property
    def num_units(self) -> int:
        return len(self)

    @property
    def is_path(self) -> bool:
        return True

    def prefix(self, k: int) -> Partition:
        n = len(self)
        if type(k) is not int or not 0 <= k <= n:
            raise ValueError(f"cut point {k} is outside 0..{n} for {self.name}")
        return Partition(k, n, frozenset(["input", *self.unit_names[:k]]),
                         (CHAIN_TENSOR,) if k < n else (), wire_cut=k if k < n else None)

    @torch.no_grad()
    def run_edge(self, x: torch.Tensor, partition: Partition) -> dict[str, torch.Tensor]:
        for unit in list(self)[:partition.cut_point]:
            x = unit(x)
        return {self.output_key if partition.all_edge else CHAIN_TENSOR: x}

    @torch.no_grad()
    def run_cloud(self, tensors: dict[str, torch.Tensor], partition: Partition) -> torch.Tensor:
        y = tensors[CHAIN_TENSOR]
        for unit in list(self)[partition.cut_point:]:
            y = unit(y)
        return y

    @torch.no_grad()
    def unit_outputs(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        for unit in self:
            x = unit(x)
            yield x

    def expected_tensors(self, partition: Partition) -> dict[str, tuple[int, ...]]:
        k = partition.cut_point
        return {CHAIN_TENSOR: tuple(self.input_shape) if k == 0 else self.out_shapes[k - 1]}

    def partition_from_request(self, wire_cut: object, names: list[str]) -> Partition:
        n = len(self)
        if type(wire_cut) is not int or not 0 <= wire_cut < n:
            raise PartitionError("bad_cut", f"cut {wire_cut!r:.20} is outside 0..{n - 1} for {self.name} "
                                            f"(at cut {n} the edge runs everything and sends nothing)")
        return self.prefix(wire_cut)

    def describe(self, partition: Partition) -> tuple[str, list[str] | None]:
        return self.unit_label(partition.cut_point), None

    @property
    def out_shapes(self) -> list[tuple[int, ...]]:
        """Each unit's output shape, from one pass over zeros (computed once)."""
        if self._out_shapes is None:
            x = torch.zeros(self.input_shape, device=next(self.parameters()).device)
            shapes = []
            with torch.no_grad():
                for unit in self:
                    x = unit(x)
                    shapes.append(tuple(x.shape))
            self._out_shapes = shapes
        return self._out_shapes


def weights_fingerprint(tensors: Iterable[torch.Tensor]) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for tensor in tensors:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())  # type: ignore[arg-type]  # numpy's stubs: a buffer only on 3.12+
    return digest.hexdigest()


def leaves(module: nn.Module, prefix: str, keep: tuple[type, ...] = ()) -> list[tuple[str, nn.Module]]:
    """Flatten nested containers into (qualified name, module), stopping at `keep` types."""
    children = list(module.named_children())
    if isinstance(module, keep) or not children:
        return [(prefix, module)]
    out: list[tuple[str, nn.Module]] = []
    for child_name, child in children:
        out.extend(leaves(child, f"{prefix}.{child_name}" if prefix else child_name, keep))
    return out


def model_partition(model: ChainModel, k: int) -> tuple[nn.Sequential, nn.Sequential]:
    """(edge part = units 1..k, cloud part = units k+1..N) for k in 0..N."""
    n = len(model)
    if not 0 <= k <= n:
        raise ValueError(f"cut point {k} is outside 0..{n} for {model.name}")
    return model[:k], model[k:]
