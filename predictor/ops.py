"""One pass over a chain model: every unit's layer ops (spec + output shape) and output size.

This is all the partition search needs to know about a model's shapes; it is computed once per
model and cached, never once per cut.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models import ChainModel
from predictor.features import add_spec, op_spec


@dataclass(frozen=True)
class Op:
    spec: dict
    out_shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return self.spec["kind"]


@dataclass(frozen=True)
class UnitInfo:
    label: str                      # e.g. "Conv2d (features.0)"
    ops: tuple[Op, ...]             # leaf ops in execution order (a residual block has several)
    out_shape: tuple[int, ...]
    out_bytes: int                  # bytes of this unit's output tensor on the wire


@dataclass(frozen=True)
class ModelInfo:
    name: str
    input_shape: tuple[int, ...]
    input_bytes: int
    units: tuple[UnitInfo, ...]

    def cut_bytes(self, k: int) -> int:
        """Bytes sent to the cloud at cut k (input at 0, output of unit k after); 0 at k = N."""
        if k == len(self.units):
            return 0
        return self.input_bytes if k == 0 else self.units[k - 1].out_bytes


def leaf_modules(unit: nn.Module) -> list[nn.Module]:
    """A unit's leaf layers in execution order (a residual block's, then its skip add)."""
    return [m for m in unit.modules() if not list(m.children())]


def has_skip_add(unit: nn.Module) -> bool:
    """An InvertedResidual that adds its input to its output (x + conv(x))."""
    return getattr(unit, "use_res_connect", False)


@torch.no_grad()
def analyze(model: ChainModel, dtype: torch.dtype = torch.float32) -> ModelInfo:
    x = torch.zeros(model.input_shape, dtype=dtype, device=next(model.parameters()).device)
    units = []
    for k, unit in enumerate(model, start=1):
        recorded: list[Op] = []

        def hook(module, inputs, output, recorded=recorded):
            recorded.append(Op(op_spec(module, tuple(inputs[0].shape)), tuple(output.shape)))

        handles = [leaf.register_forward_hook(hook) for leaf in leaf_modules(unit)]
        try:
            y = unit(x)
        finally:
            for h in handles:
                h.remove()
        if has_skip_add(unit):
            recorded.append(Op(add_spec(y.shape), tuple(y.shape)))
        units.append(UnitInfo(model.unit_label(k), tuple(recorded), tuple(y.shape),
                              y.numel() * y.element_size()))
        x = y
    input_bytes = math.prod(model.input_shape) * torch.empty((), dtype=dtype).element_size()
    return ModelInfo(model.name, tuple(model.input_shape), input_bytes, tuple(units))
