"""The cloud: runs units k+1..N of a model on the tensor an edge sends and returns the answer.

Requests (JSON headers, see docs/PROTOCOL.md):
  hello  {"version", ["model", "fingerprint"]}          -> hello {"version", "models"}
  infer  {"model", "cut", "fingerprint", "want_logits"} + tensor "x" -> result
         {"top5": [[class, probability], ...], "cloud_ms"} (+ tensor "logits" when asked)
  probe  + tensor "data" (uint8)                         -> probe_ok {"bytes"}
  stats                                                  -> stats {"served", "pid"}
Every infer names its model, cut and weights fingerprint, so no per-connection state is kept.
Every reply carries "load": how much slower than unloaded this process now computes (net/load.py).
"""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import torch

from models import ALL_MODEL_NAMES, ChainModel, get_model
from models.dag import DagModel
from net.frame_server import FrameServer, Reply, RequestError, serve_probes
from net.load import LoadMeter
from net.protocol import DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION
from predictor.ops import ModelInfo, analyze
from utils.classes import top_k

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9999


def _validate_dag_request(model: DagModel, entries: list[dict]) -> None:
    """The tensors of a DAG request: node outputs of the right shapes that cut the input off."""
    if not entries:
        raise RequestError("bad_tensor", f"a {model.name} request sends at least one node's output")
    for e in entries:
        node = model.nodes.get(e["name"])
        if node is None or e["dtype"] != "float32" or e["shape"] != list(node.out_shape):
            expected = f"float32 {list(node.out_shape)}" if node else "a node of the model"
            raise RequestError("bad_tensor", f"{model.name}: tensor {e['name']!r:.60} ({e['dtype']} "
                                             f"{e['shape']!r:.60}) is not {expected}")
    names = {e["name"] for e in entries}
    if model.output_name in names:
        raise RequestError("bad_cut", f"{model.name}: the edge computed the output; nothing to run")
    try:
        model.needed_nodes(names)
    except ValueError as e:
        raise RequestError("bad_cut", f"{model.name}: {e}") from None


class ModelCache:
    """Each model built once, on first use, with its shapes; thread-safe. One lock per model, so
    a request for a built model never waits while another model builds (VGG16-BN: seconds)."""

    def __init__(self, device: torch.device, weights: dict[str, Path] | None = None):
        self.device = device
        self.weights = weights or {}
        self._models: dict[str, tuple[ChainModel | DagModel, ModelInfo | None]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()  # guards _locks only, held for a dict lookup

    def get(self, name: str) -> tuple[ChainModel | DagModel, ModelInfo | None]:
        """A chain model with its shapes, or a DAG model (which carries its own) and None."""
        built = self._models.get(name)
        if built is not None:
            return built
        with self._locks_lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._models:
                self._models[name] = self._build(name)
            return self._models[name]

    def _build(self, name: str) -> tuple[ChainModel | DagModel, ModelInfo | None]:
        model = get_model(name, self.weights.get(name), self.device)
        if isinstance(model, DagModel):
            info = None
            with torch.no_grad():  # warm-up pass: the first forward is the slowest
                model(torch.zeros(model.input_shape, device=self.device))
        else:
            info = analyze(model)  # also the warm-up pass
        model.fingerprint  # hashing VGG16-BN's weights takes ~0.5 s: once, here
        return model, info


class CloudServer(FrameServer):
    role = "cloud server"

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str = "cpu",
                 weights: dict[str, Path] | None = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, **kwargs):
        self.models = ModelCache(torch.device(device), weights)
        super().__init__(host, port, max_frame_bytes, **kwargs)
        self.load = LoadMeter()
        self.served = 0  # inference requests answered: behind a balancer, who served how many
        self._served_lock = threading.Lock()
        self.handlers.update(hello=self._hello, infer=self._infer, stats=self._stats)
        self.validators.update(hello=self._validate_hello, infer=self._validate_infer)
        serve_probes(self)

    # -- hello ---------------------------------------------------------------------------------
    def _validate_hello(self, header: dict) -> None:
        if header.get("version") != PROTOCOL_VERSION:
            raise RequestError("version_mismatch", f"edge speaks protocol version {header.get('version')!r:.20}, "
                                                   f"cloud speaks {PROTOCOL_VERSION}")
        if "model" in header:
            self._check_weights(header.get("model"), header.get("fingerprint"))

    def _hello(self, header: dict, tensors) -> Reply:
        return {"type": "hello", "version": PROTOCOL_VERSION, "models": list(ALL_MODEL_NAMES)}, None

    def _check_weights(self, name, fingerprint):
        if name not in ALL_MODEL_NAMES:
            raise RequestError("unknown_model", f"unknown model {name!r:.40}; this cloud serves: "
                                                f"{', '.join(ALL_MODEL_NAMES)}")
        model, info = self.models.get(name)
        if fingerprint != model.fingerprint:
            raise RequestError("weights_mismatch", f"edge holds {name} weights {fingerprint!r:.40}, cloud "
                                                   f"holds {model.fingerprint}: load the same weights on both")
        return model, info

    def _stats(self, header: dict, tensors) -> Reply:
        return {"type": "stats", "served": self.served, "pid": os.getpid()}, None

    # -- infer ---------------------------------------------------------------------------------
    def _validate_infer(self, header: dict) -> None:
        """Model, weights, cut, and the tensor's dtype and shape, before its bytes are read."""
        model, info = self._check_weights(header.get("model"), header.get("fingerprint"))
        if info is None:
            return _validate_dag_request(model, header["tensors"])
        cut, n = header.get("cut"), len(info.units)
        if type(cut) is not int or not 0 <= cut < n:
            raise RequestError("bad_cut", f"cut {cut!r:.20} is outside 0..{n - 1} for {info.name} "
                                          f"(at cut {n} the edge runs everything and sends nothing)")
        expected_shape = list(info.input_shape if cut == 0 else info.units[cut - 1].out_shape)
        entries = header["tensors"]
        if (len(entries) != 1 or entries[0]["name"] != "x" or entries[0]["dtype"] != "float32"
                or entries[0]["shape"] != expected_shape):
            got = [(e["name"], e["dtype"], e["shape"]) for e in entries][:4]
            raise RequestError("bad_tensor", f"{info.name} at cut {cut} takes one float32 tensor 'x' "
                                             f"of shape {expected_shape}, got {got!r:.200}")

    def _infer(self, header: dict, tensors: dict[str, torch.Tensor]) -> Reply:
        model, info = self.models.get(header["model"])
        tensors = {name: t.to(self.models.device) for name, t in tensors.items()}
        with torch.no_grad():
            t0 = time.perf_counter()
            if info is None:  # a DAG: run every node the output still needs
                logits = model.run_cloud(tensors)
            else:
                logits = model[header["cut"]:](tensors["x"])
            cloud_ms = (time.perf_counter() - t0) * 1e3
        self.load.record((header["model"], header.get("cut"), *sorted(tensors)), cloud_ms)
        with self._served_lock:
            self.served += 1
        reply = {"type": "result", "top5": top_k(logits), "cloud_ms": cloud_ms}
        return reply, ({"logits": logits.cpu()} if header.get("want_logits") else None)
