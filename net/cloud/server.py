"""The cloud: runs units k+1..N of a model on the tensor an edge sends and returns the answer.

Requests (JSON headers, see docs/PROTOCOL.md):
  hello  {"version", ["model", "fingerprint"], ["image_decoder"]}
                                                         -> hello {"version", "models", "image_decoder"}
  infer  {"model", "cut", "fingerprint", "want_logits", ["codecs"]} + tensor "x" -> result
         {"top5": [[class, probability], ...], "cloud_ms", "decode_ms"} (+ tensor "logits" when asked)
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

from models import ALL_MODEL_NAMES, get_model
from models.split import PartitionError, SplitModel
from models.weights import preprocessing
from net.server.framework import FrameServer, Reply, RequestError, serve_probes
from net.server.load import LoadMeter
from net.wire import codecs
from net.wire.protocol import DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION
from utils.classes import top_k

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9999


class ModelCache:
    """Each model built once, on first use, with its shapes; thread-safe. One lock per model, so
    a request for a built model never waits while another model builds (VGG16-BN: seconds)."""

    def __init__(self, device: torch.device, weights: dict[str, Path] | None = None):
        self.device = device
        self.weights = weights or {}
        self._models: dict[str, SplitModel] = {}
        self._preprocessing: dict[str, codecs.Preprocess] = {}  # per built model, made once
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()  # guards _locks only, held for a dict lookup

    def get(self, name: str) -> SplitModel:
        """The model `name`, built, warmed up and fingerprinted."""
        built = self._models.get(name)
        if built is not None:
            return built
        with self._locks_lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            if name not in self._models:
                self._models[name] = self._build(name)
            return self._models[name]

    def preprocessing(self, name: str) -> codecs.Preprocess:
        """How built model `name`'s weights expect an image prepared: what an image sent as a
        file or pixels is turned into, exactly as the edge would have."""
        return self._preprocessing[name]

    def _build(self, name: str) -> SplitModel:
        model = get_model(name, self.weights.get(name), self.device)
        model.warm_up(self.device)
        model.expected_tensors(model.prefix(0))  # any shapes a request is checked against, once
        self._preprocessing[name] = preprocessing(name, self.weights.get(name))
        return model


class CloudServer(FrameServer):
    role = "cloud server"

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, device: str = "cpu",
                 weights: dict[str, Path] | None = None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, **kwargs):
        self.models = ModelCache(torch.device(device), weights)
        super().__init__(host, port, max_frame_bytes, **kwargs)
        self.load: LoadMeter = LoadMeter()  # a cloud always knows its load
        self.served = 0  # inference requests answered: behind a balancer, who served how many
        self._served_lock = threading.Lock()
        self.handlers.update(hello=self._hello, infer=self._infer, stats=self._stats)
        self.validators.update(hello=self._validate_hello, infer=self._validate_infer)
        serve_probes(self)

    # -- hello ---------------------------------------------------------------------------------
    def _validate_hello(self, header: dict) -> None:
        if header.get("version") != PROTOCOL_VERSION:
            raise RequestError("version_mismatch", f"edge speaks protocol version {header.get('version')!r:.20}, "
                                                   f"cloud speaks {PROTOCOL_VERSION}: run the same release on both")
        if "model" in header:
            self._check_weights(header.get("model"), header.get("fingerprint"))

    def _hello(self, header: dict, tensors) -> Reply:
        return {"type": "hello", "version": PROTOCOL_VERSION, "models": list(ALL_MODEL_NAMES),
                "image_decoder": codecs.image_decoder()}, None

    def _check_weights(self, name, fingerprint):
        if name not in ALL_MODEL_NAMES:
            raise RequestError("unknown_model", f"unknown model {name!r:.40}; this cloud serves: "
                                                f"{', '.join(ALL_MODEL_NAMES)}")
        model = self.models.get(name)
        if fingerprint != model.fingerprint:
            raise RequestError("weights_mismatch", f"edge holds {name} weights {fingerprint!r:.40}, cloud "
                                                   f"holds {model.fingerprint}: load the same weights on both")
        return model

    def _stats(self, header: dict, tensors) -> Reply:
        return {"type": "stats", "served": self.served, "pid": os.getpid()}, None

    # -- infer ---------------------------------------------------------------------------------
    def _validate_infer(self, header: dict) -> None:
        """Model, weights, partition, the tensors' (decoded) dtypes and shapes and their coded
        sizes, before their bytes are read."""
        model = self._check_weights(header.get("model"), header.get("fingerprint"))
        self._check_request(model, header)

    def _check_request(self, model: SplitModel, header: dict):
        try:
            entries = codecs.declared_entries(header)
            partition = model.check_request(header.get("cut"), entries)
        except codecs.CodecError as e:
            raise RequestError("bad_codec", str(e)) from None
        except PartitionError as e:
            raise RequestError(e.code, str(e)) from None
        image_codecs = [e["codec"] for e in entries if codecs.is_input_codec(e.get("codec", "none"))]
        if not image_codecs:
            return partition
        if partition.cut_point != 0:
            raise RequestError("bad_codec", f"an input codec codes the input only (cut 0), not cut {partition.cut_point}")
        takes = codecs.input_codecs_for(self.models.preprocessing(model.name), tuple(model.input_shape))
        refused = [c for c in image_codecs if c not in takes]
        if refused:
            raise RequestError("bad_codec", f"{model.name} takes its image as {' or '.join(takes) or 'a tensor only'}, "
                                            f"not {refused[0]!r:.20}")
        return partition

    def _infer(self, header: dict, tensors: dict[str, torch.Tensor]) -> Reply:
        model = self.models.get(header["model"])
        partition = self._check_request(model, header)
        t0 = time.perf_counter()
        try:
            tensors = codecs.decode(header, tensors, self.models.preprocessing(model.name))
        except codecs.CodecError as e:  # bounded: nothing was decoded past its declared size
            raise RequestError("bad_codec", str(e), close=True) from None
        decode_ms = (time.perf_counter() - t0) * 1e3
        tensors = {name: t.to(self.models.device) for name, t in tensors.items()}
        t0 = time.perf_counter()
        logits = model.run_cloud(tensors, partition)
        cloud_ms = (time.perf_counter() - t0) * 1e3
        self.load.record((model.name, partition.cut_point, *partition.crossing), cloud_ms)
        with self._served_lock:
            self.served += 1
        reply = {"type": "result", "top5": top_k(logits), "cloud_ms": cloud_ms, "decode_ms": decode_ms}
        return reply, ({"logits": logits.cpu()} if header.get("want_logits") else None)
