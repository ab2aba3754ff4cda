"""Time every layer op of the models on this machine, under the conditions of a real pass.

A layer timed alone, again and again, runs from a hot cache a real forward pass does not give it
(on this machine MobileNetV2's layers timed that way summed to 0.8x the whole model), and timed
alone after a cache flush it runs from a cold input a real pass does not have either (1.5x). So
each op is timed *inside* a forward pass: the pass runs the leaf ops one after another, as the
model does, with a clock read between them; the cache is flushed before every pass, as after
another request. The grid of configurations "around the ones the models use" comes from running
each model at several input resolutions (and MobileNetV2 at several widths), plus a sweep of
linear layers, whose shapes do not change with the resolution.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision.models import mobilenet_v2
from tqdm import tqdm

from models import DAG_MODEL_NAMES, MODEL_NAMES, get_dnn_model
from models.dag import DagModel, get_dag_model
from models.mobilenet import to_chain as mobilenet_chain
from predictor.features import FEATURES, FREE_KINDS, add_spec, op_features, op_spec
from predictor.ops import has_skip_add, leaf_modules
from predictor.planner.dag import node_spec
from utils.provenance import provenance, write_csv_with_provenance

# Bigger than the last-level cache of the machines we run on, so a pass starts cold.
CACHE_FLUSH_BYTES = 64 * 2**20
# (in, out) features of linear layers around the ones the models use: their shapes do not change
# with the input resolution, so they get a sweep of their own.
LINEAR_SWEEP_SIZES = [(84, 10), (120, 84), (400, 120), (1024, 512), (1280, 1000), (2048, 2048),
                      (4096, 1000), (4096, 4096), (8192, 1000), (9216, 4096), (16384, 2048),
                      (25088, 4096)]


@dataclass(frozen=True)
class ProfileSettings:
    resolutions: tuple[int, ...]
    mobilenet_widths: tuple[float, ...]
    linear_sweep: bool
    warmup: int
    repeats: int


FULL = ProfileSettings(resolutions=(160, 192, 224, 256), mobilenet_widths=(0.75, 1.4),
                       linear_sweep=True, warmup=2, repeats=15)
QUICK = ProfileSettings(resolutions=(224,), mobilenet_widths=(), linear_sweep=True,
                        warmup=1, repeats=3)


class CacheFlusher:
    def __init__(self, nbytes: int = CACHE_FLUSH_BYTES):
        self._buffer = torch.zeros(nbytes // 4)

    def __call__(self) -> None:
        self._buffer.add_(1.0)


@torch.no_grad()
def timed_pass(model: nn.Sequential, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[dict, tuple, float]]]:
    """Run `model` leaf op by leaf op; return its output and (spec, out_shape, ms) per op.

    Units are run as their leaves in order; an InvertedResidual adds its input at the end, which
    is exactly what its forward does (the caller checks the output against model(x)).
    """
    records = []
    clock = time.perf_counter
    for unit in model:
        unit_in = x
        for leaf in leaf_modules(unit):
            t0 = clock()
            y = leaf(x)
            ms = (clock() - t0) * 1e3
            records.append((op_spec(leaf, tuple(x.shape)), tuple(y.shape), ms))
            x = y
        if has_skip_add(unit):
            t0 = clock()
            y = unit_in + x
            ms = (clock() - t0) * 1e3
            records.append((add_spec(y.shape), tuple(y.shape), ms))
            x = y
    return x, records


@torch.no_grad()
def timed_dag_pass(model: DagModel, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[dict, tuple, float]]]:
    """Run a traced DAG model node by node in traced order, with a clock read around each node."""
    records, env = [], {model.input_name: x}
    clock = time.perf_counter
    for name in model.nodes:
        if name == model.input_name:
            continue
        node = model.fx_node(name)
        t0 = clock()
        env[name] = model.eval_node(node, env)
        ms = (clock() - t0) * 1e3
        first_input = env[model.nodes[name].inputs[0]] if model.nodes[name].inputs else None
        spec = node_spec(model, name, tuple(first_input.shape) if first_input is not None else None,
                         tuple(env[name].shape))
        if spec is not None:
            records.append((spec, tuple(env[name].shape), ms))
    return env[model.output_name], records


def profile_chains(jobs: list[tuple[str, nn.Sequential | DagModel, tuple[int, ...]]],
                   settings: ProfileSettings, flush: CacheFlusher, desc: str = "profiling") -> list[dict]:
    """Median time of each op of each (source, chain, input shape) over cold-cache passes.

    Each chain's passes run back to back, as a device serving one model runs them: interleaving
    chains was tried and made MobileNetV2's small ops at 2 threads look 15% faster than the model
    then ran on its own.
    """
    runs = []
    with tqdm(total=(settings.warmup + settings.repeats) * len(jobs), desc=desc, unit="pass") as bar:
        for source, chain, shape in jobs:
            x = torch.randn(shape)
            with torch.no_grad():
                expected = chain(x.clone())
            chain_runs = []
            for i in range(settings.warmup + settings.repeats):
                flush()
                out, records = timed_dag_pass(chain, x.clone()) if isinstance(chain, DagModel) else timed_pass(chain, x.clone())
                if i == 0 and not torch.allclose(out, expected, rtol=1e-4, atol=1e-5):
                    raise AssertionError(f"op-by-op pass of {source} does not reproduce its forward")
                if i >= settings.warmup:
                    chain_runs.append(records)
                bar.update()
            runs.append(chain_runs)
    rows = []
    for (source, _, _), chain_runs in zip(jobs, runs):
        for position, (spec, out_shape, _) in enumerate(chain_runs[0]):
            if spec["kind"] in FREE_KINDS:
                continue
            ms = statistics.median(run[position][2] for run in chain_runs)
            rows.append({"source": source, "spec": spec, "out_shape": out_shape, "latency_ms": ms})
    return rows


def workloads(settings: ProfileSettings) -> list[tuple[str, nn.Sequential | DagModel, tuple[int, ...]]]:
    """(source label, chain, input shape) for every pass the profile times."""
    out: list[tuple[str, nn.Sequential | DagModel, tuple[int, ...]]] = []
    for name in MODEL_NAMES:
        model = get_dnn_model(name)
        if model.input_shape[1:] != (3, 224, 224):  # a fixed input of its own (fashion_net: 1x28x28)
            out.append((f"{name}@{model.input_shape[-1]}", model, model.input_shape))
            continue
        for res in settings.resolutions:
            out.append((f"{name}@{res}", model, (1, 3, res, res)))
    for name in DAG_MODEL_NAMES:  # their convs, pools, adds and concatenations, in their graphs
        dag = get_dag_model(name)
        for res in settings.resolutions:
            out.append((f"{name}@{res}", dag, (1, 3, res, res)))
    for width in settings.mobilenet_widths:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            chain = mobilenet_chain(mobilenet_v2(weights=None, width_mult=width)).eval()
        out.append((f"mobile_net_x{width}@224", chain, (1, 3, 224, 224)))
    if settings.linear_sweep:
        for n_in, n_out in LINEAR_SWEEP_SIZES:
            out.append((f"linear_{n_in}x{n_out}", nn.Sequential(nn.Linear(n_in, n_out)).eval(),
                        (1, n_in)))
    return out


def profile_role(role: str, threads: int, settings: ProfileSettings, dataset_dir: Path,
                 kinds: tuple[str, ...] | None = None) -> dict[str, Path]:
    """Profile every workload at `threads` threads; write one <kind>_lat.csv per kind (only
    `kinds`, and only the workloads that have them, when given)."""
    torch.set_num_threads(threads)
    jobs = workloads(settings)
    if kinds is not None and set(kinds) <= {"cat"}:  # only the DAG models concatenate
        jobs = [job for job in jobs if isinstance(job[1], DagModel)]
    rows = profile_chains(jobs, settings, CacheFlusher(), desc=f"profiling {role} ({threads} thread(s))")
    meta = provenance(threads=threads, role=role)
    out_dir = dataset_dir / role
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, feature_names in FEATURES.items():
        if kinds is not None and kind not in kinds:
            continue
        table = [{"source": r["source"], "in_shape": "x".join(map(str, r["spec"]["in_shape"])),
                  "out_shape": "x".join(map(str, r["out_shape"])), **op_features(r["spec"], r["out_shape"]),
                  "latency_ms": round(r["latency_ms"], 6)}
                 for r in rows if r["spec"]["kind"] == kind]
        path = out_dir / f"{kind}_lat.csv"
        write_csv_with_provenance(path, table, ["source", "in_shape", "out_shape", *feature_names,
                                                "latency_ms"], meta)
        written[kind] = path
    return written
