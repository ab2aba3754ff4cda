"""Layer kinds, their specs (what builds one), and the features their latency is regressed on.

A spec is a plain dict (JSON/CSV friendly) holding the kind, the layer's hyper-parameters and its
input shape; `build_op(spec)` makes a runnable layer and input from it, so the profiler can time
layers the models use and variants around them.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
from torch import nn

# Features per kind, in the order the regressions use. Why these: a conv's cost is its
# multiply-accumulates (which depend on kernel size and input channels, not only the output), plus
# memory traffic for its input, output and weights, and its unfolded input (im2col: output
# positions x input channels x kernel area), which dominates thin convs such as LeNet's; pools, batch-norm and activations are
# memory-bound, so element counts drive them.
FEATURES: dict[str, tuple[str, ...]] = {
    "conv": ("macs", "in_elems", "out_elems", "weight_elems", "im2col_elems"),
    "dwconv": ("macs", "in_elems", "out_elems"),
    "linear": ("macs", "in_elems", "out_elems"),
    "maxpool": ("window_elems", "in_elems", "out_elems"),
    "avgpool": ("in_elems", "out_elems"),
    "batchnorm": ("elems",),
    # an out-of-place activation (the DAG models', made so for split execution) also allocates
    # and writes a new tensor: measured 10x an in-place one on ResNet-18's large maps
    "relu": ("elems", "new_tensor_elems"),
    "add": ("elems",),
    "cat": ("elems",),  # a concatenation copies every element of its output once
}
KINDS: tuple[str, ...] = tuple(FEATURES)
# In eval mode dropout returns its input and flatten of a contiguous tensor is a view: a few
# microseconds of Python call each, below the noise of any layer that computes. Predicted as 0.
FREE_KINDS: tuple[str, ...] = ("dropout", "flatten")


def op_kind(module: nn.Module) -> str:
    if isinstance(module, nn.Conv2d):
        return "dwconv" if module.groups > 1 else "conv"
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.MaxPool2d):
        return "maxpool"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AvgPool2d)):
        return "avgpool"
    if isinstance(module, nn.BatchNorm2d):
        return "batchnorm"
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        return "relu"
    if isinstance(module, nn.Dropout):
        return "dropout"
    if isinstance(module, nn.Flatten):
        return "flatten"
    raise TypeError(f"no latency predictor for layer type {type(module).__name__}")


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else tuple(v)


def op_spec(module: nn.Module, in_shape: tuple[int, ...]) -> dict:
    """The spec of `module` applied to an input of `in_shape`."""
    kind = op_kind(module)
    spec: dict = {"kind": kind, "in_shape": list(in_shape)}
    if kind in ("conv", "dwconv"):
        conv = cast(nn.Conv2d, module)  # op_kind checked; torch types module attributes as Tensor | Module
        spec.update(cout=conv.out_channels, kernel=conv.kernel_size[0], stride=conv.stride[0],
                    padding=conv.padding[0], groups=conv.groups, bias=conv.bias is not None)
    elif kind == "linear":
        spec.update(out_features=module.out_features, bias=module.bias is not None)
    elif kind == "maxpool":
        spec.update(kernel=_pair(module.kernel_size)[0], stride=_pair(module.stride)[0],
                    padding=_pair(module.padding)[0])
    elif kind == "avgpool":
        spec.update(output_size=list(_pair(module.output_size)))
    elif kind == "relu":
        spec.update(six=isinstance(module, nn.ReLU6), inplace=bool(module.inplace))
    return spec


def add_spec(shape) -> dict:
    """The spec of an element-wise add of two tensors of `shape` (a skip connection)."""
    return {"kind": "add", "in_shape": list(shape)}


def build_op(spec: dict) -> tuple[Callable[..., torch.Tensor], tuple[torch.Tensor, ...]]:
    """A runnable layer for `spec` and an input for it (random values; cost does not depend on them)."""
    kind, in_shape = spec["kind"], spec["in_shape"]
    x = torch.randn(in_shape)
    layer: nn.Module
    if kind in ("conv", "dwconv"):
        layer = nn.Conv2d(in_shape[1], spec["cout"], spec["kernel"], spec["stride"], spec["padding"],
                          groups=spec["groups"], bias=spec["bias"])
    elif kind == "linear":
        layer = nn.Linear(in_shape[-1], spec["out_features"], bias=spec["bias"])
    elif kind == "maxpool":
        layer = nn.MaxPool2d(spec["kernel"], spec["stride"], spec["padding"])
    elif kind == "avgpool":
        layer = nn.AdaptiveAvgPool2d(tuple(spec["output_size"]))
    elif kind == "batchnorm":
        layer = nn.BatchNorm2d(in_shape[1])
    elif kind == "relu":
        inplace = spec.get("inplace", True)
        layer = nn.ReLU6(inplace=inplace) if spec.get("six") else nn.ReLU(inplace=inplace)
    elif kind == "add":
        y = torch.randn(in_shape)
        return (lambda a, b: a + b), (x, y)
    elif kind == "cat":  # two halves along the channels, like an inception block's branches
        half = in_shape[1] // 2
        a, b = torch.randn([in_shape[0], half, *in_shape[2:]]), torch.randn([in_shape[0], in_shape[1] - half, *in_shape[2:]])
        return (lambda p, q: torch.cat([p, q], 1)), (a, b)
    else:
        raise ValueError(f"cannot build a layer of kind {kind!r}")
    return layer.eval(), (x,)


def op_features(spec: dict, out_shape: tuple[int, ...]) -> dict[str, float]:
    """The regression features of `spec` producing an output of `out_shape`."""
    kind = spec["kind"]
    in_elems = math.prod(spec["in_shape"])
    out_elems = math.prod(out_shape)
    if kind in ("conv", "dwconv"):
        cin_per_group = spec["in_shape"][1] // spec["groups"]
        k2 = spec["kernel"] ** 2
        f = {"macs": out_elems * cin_per_group * k2, "in_elems": in_elems, "out_elems": out_elems,
             "weight_elems": spec["cout"] * cin_per_group * k2,
             "im2col_elems": out_elems // spec["cout"] * cin_per_group * k2}
    elif kind == "linear":
        f = {"macs": in_elems * spec["out_features"], "in_elems": in_elems, "out_elems": out_elems}
    elif kind == "maxpool":
        f = {"window_elems": out_elems * spec["kernel"] ** 2, "in_elems": in_elems,
             "out_elems": out_elems}
    elif kind == "avgpool":
        f = {"in_elems": in_elems, "out_elems": out_elems}
    elif kind == "relu":
        f = {"elems": in_elems, "new_tensor_elems": 0 if spec.get("inplace", True) else out_elems}
    else:  # batchnorm, add, cat: one pass over the elements
        f = {"elems": in_elems}
    return {name: float(f[name]) for name in FEATURES[kind]}
