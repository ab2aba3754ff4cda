"""Multi-task mode, edge side: a queue of inference tasks over one cloud connection, the uplink
re-measured in the background (APScheduler), optionally replaying a bandwidth trace."""
from __future__ import annotations

import datetime
import logging
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from apscheduler.schedulers.background import BackgroundScheduler

from models import MODEL_NAMES, get_model
from models.split import SplitModel
from models.weights import preprocessing
from net.edge.bandwidth import measure_bandwidth_mbps
from net.edge.client import DEFAULT_TIMEOUT_S, CloudClient, CloudRefused, CloudUnavailable
from net.edge.runner import collaborative_inference
from net.emulation.link import LinkPacer
from net.emulation.trace import TracePoint
from net.wire.codecs import ImageSource
from predictor import LATENCY, LatencyPredictor, Link, Objective, Planner, planner_for
from predictor.planner import ImageInfo, allowed_codecs
from predictor.planner.codec_costs import BASELINE_CODEC

log = logging.getLogger("neurosurgeon.tasks")
DEFAULT_NUM_TASKS = 40
DEFAULT_INTERVAL_S = 3.0


def draw_tasks(num_tasks: int, seed: int | None) -> list[str]:
    """`num_tasks` model names drawn uniformly at random (reproducible with a seed)."""
    rng = random.Random(seed)
    return [rng.choice(MODEL_NAMES) for _ in range(num_tasks)]


class BandwidthTracker:
    """The latest uplink measurement, refreshed every `interval_s` by a background job.

    Probes go to the first of `addresses` that answers (the monitor server, else the cloud's
    main port) through the edge's own pacer, so they measure the emulated link the tensors take.
    A failed measurement keeps the previous value.
    """

    def __init__(self, scheduler: BackgroundScheduler, addresses: list[tuple[str, int]],
                 pacer: LinkPacer | None, rtt_ms: float, interval_s: float, token: bytes | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        self.addresses, self.pacer, self.rtt_ms, self.token = addresses, pacer, rtt_ms, token
        self.timeout_s = timeout_s
        self.latest_mbps: float | None = None
        self.refused: str | None = None  # why the cloud refused our probes (token, version)
        self.measurements: list[tuple[float, float]] = []  # (time, Mbit/s)
        self._client: CloudClient | None = None
        self.refresh()
        scheduler.add_job(self.refresh, "interval", seconds=interval_s, max_instances=1, coalesce=True)

    def refresh(self) -> None:
        if self._client is not None:
            candidates = [self._client]
        else:
            candidates = [CloudClient(h, p, pacer=self.pacer, rtt_ms=self.rtt_ms, token=self.token,
                                      timeout_s=self.timeout_s) for h, p in self.addresses]
        for client in candidates:
            try:
                self.latest_mbps = measure_bandwidth_mbps(client)
            except (CloudUnavailable, CloudRefused) as e:
                client.close()
                self._client = None
                if isinstance(e, CloudRefused):
                    self.refused = str(e)
                log.info("bandwidth probe failed: %s", e)
                continue
            self.measurements.append((time.monotonic(), self.latest_mbps))
            self._client = client
            return

    def share_load(self, client: CloudClient) -> None:
        """Give `client` the cloud's load seen by the probes, when it is newer than its own: an
        edge that moved all its work home sends no requests, and learns here that the cloud is
        free again."""
        probe_client = self._client
        if probe_client is not None and probe_client.cloud_load_at > client.cloud_load_at:
            client.cloud_load, client.cloud_load_at = probe_client.cloud_load, probe_client.cloud_load_at

    def close(self) -> None:
        if self._client is not None:
            self._client.close()


def replay_trace(scheduler: BackgroundScheduler, pacer: LinkPacer, trace: list[TracePoint],
                 start: float) -> None:
    """Set the emulated uplink to each trace point's rate at its time after `start` (epoch s)."""
    pacer.rate_mbps = trace[0].bandwidth_mbps
    for point in trace[1:]:
        when = datetime.datetime.fromtimestamp(start + point.time_s)
        scheduler.add_job(setattr, "date", run_date=when, args=(pacer, "rate_mbps", point.bandwidth_mbps),
                          misfire_grace_time=None)


@dataclass
class TaskRunner:
    """Runs tasks one after another; one row per task, whatever happens to it."""
    client: CloudClient
    edge: LatencyPredictor
    cloud: LatencyPredictor
    x: torch.Tensor | dict[str, torch.Tensor]  # one input for every model, or each model's own
    rtt_ms: float = 0.0
    edge_slowdown: float = 1.0
    weights: dict[str, Path] = field(default_factory=dict)
    objective: Objective = LATENCY  # with the edge's powers, when known: energy in the rows
    source: ImageSource | None = None  # the image file every task classifies, if given
    codec: str = "auto"  # --codec
    accuracy_budget: float = 0.0  # --accuracy-budget
    _models: dict[str, tuple[SplitModel, Planner]] = field(default_factory=dict)
    _images: dict[tuple[str, tuple[str, ...]], ImageInfo] = field(default_factory=dict)
    _sources: dict[str, ImageSource] = field(default_factory=dict)

    def source_for(self, name: str) -> ImageSource | None:
        """The image file, prepared the way model `name`'s weights expect."""
        if self.source is None:
            return None
        if name not in self._sources:  # once per model, not once per task
            self._sources[name] = self.source.with_preprocess(preprocessing(name, self.weights.get(name)))
        return self._sources[name]

    def _configure_codecs(self, name: str, planner: Planner) -> None:
        """The codecs this task may use: `file` once the cloud's hello showed the same image decoder,
        the input codecs the model's input takes."""
        source = self.source_for(name)
        image_codecs = source.input_codecs(tuple(planner.model.input_shape)) if source is not None else ()
        allowed = allowed_codecs(self.codec, self.accuracy_budget, source is not None,
                                 self.client.same_image_decoder, image_codecs)
        image = None
        if source is not None:
            image = self._images.get((name, allowed))
            if image is None:
                image = self._images[(name, allowed)] = ImageInfo.of(source, allowed)
        planner.configure_codecs(allowed, image, self.accuracy_budget)

    def model(self, name: str) -> tuple[SplitModel, Planner]:
        """Built once per name, warmed up, fingerprinted: tasks time inference, not start-up."""
        if name not in self._models:
            x = self.input_for(name)
            model = get_model(name, self.weights.get(name), x.device)
            planner = planner_for(model, self.edge, self.cloud, self.edge_slowdown)
            model.warm_up(x.device)
            self._models[name] = (model, planner)
        return self._models[name]

    def input_for(self, name: str) -> torch.Tensor:
        return self.x[name] if isinstance(self.x, dict) else self.x

    def run_task(self, task: int, name: str, bandwidth_mbps: float | None, started: float) -> dict:
        model, planner = self.model(name)
        self._configure_codecs(name, planner)
        start_s = time.monotonic() - started
        # never measured: the cloud is unreachable, and the edge does all
        link = None if bandwidth_mbps is None else Link(bandwidth_mbps, self.rtt_ms)
        report = collaborative_inference(model, planner, self.input_for(name), self.client if link else None, link,
                                         self.objective, edge_slowdown=self.edge_slowdown, source=self.source_for(name),
                                         unavailable=None if link else "uplink never measured: cloud unreachable")
        p, m = report.predicted_ms, report.measured_ms
        n = model.num_units
        energy = report.energy_mj or {}
        edge_only_energy = self.objective.energy_mj(planner.edge_only_ms(), 0.0, 0.0)
        return {
            "task": task, "model": name, "start_s": round(start_s, 3),
            "bandwidth_mbps": None if bandwidth_mbps is None else round(bandwidth_mbps, 4),
            "cut_point": report.cut_point, "num_units": n, "cut_layer": report.cut_layer,
            "predicted_edge_ms": p.edge, "predicted_transfer_ms": p.transfer,
            "predicted_cloud_ms": p.cloud, "predicted_total_ms": p.total,
            "measured_edge_ms": m.edge, "measured_transfer_ms": m.transfer,
            "measured_cloud_ms": m.cloud, "measured_total_ms": m.total,
            "overhead_ms": report.overhead_ms, "transfer_bytes": report.transfer_bytes,
            "codec": report.codec, "coded_bytes": report.coded_bytes, "lossy": report.lossy,
            "predicted_encode_ms": p.encode, "predicted_decode_ms": p.decode,
            "measured_encode_ms": m.encode, "measured_decode_ms": m.decode,
            "predicted_edge_only_ms": planner.edge_only_ms(),
            "predicted_cloud_only_ms": planner.cloud_only_ms(link) if link else None,
            # what a real app does: upload the crop as a JPEG (with an image only)
            "predicted_jpeg_upload_ms": (planner.cost(model.prefix(0), link, LATENCY, BASELINE_CODEC).total_ms
                                         if link and planner.has_image_size(BASELINE_CODEC) else None),
            "fallback": report.fallback, "fallback_reason": report.fallback_reason or "",
            "retries": report.retries, "cloud_load": report.cloud_load, "objective": report.objective,
            "predicted_energy_mj": energy.get("predicted"),
            "energy_mj_from_measured_times": energy.get("from_measured_times"),
            "predicted_edge_only_energy_mj": edge_only_energy,
            "top1": report.top5[0][0],
        }


def summarize(rows: list[dict]) -> list[dict]:
    """Per model: tasks, cuts chosen, measured total mean/p50/p95, mean predicted total, mean
    absolute prediction error, and the chosen cuts' speed-up over edge-only and cloud-only, and
    the energy they save against edge-only. Those three compare like with like: predictions
    with predictions (edge-only and cloud-only are not run, so there is nothing measured to set
    against them); an all-edge model shows 1.00x and 0%. energy_mj is the mean modelled energy
    of the measured times, when the edge's powers are known."""
    out = []
    for name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == name]
        measured = [r["measured_total_ms"] for r in mine]
        cloud_only = [r["predicted_cloud_only_ms"] for r in mine if r["predicted_cloud_only_ms"] is not None]
        jpeg = [r["predicted_jpeg_upload_ms"] for r in mine if r.get("predicted_jpeg_upload_ms") is not None]
        cuts = sorted({r["cut_point"] for r in mine})
        predicted = statistics.fmean(r["predicted_total_ms"] for r in mine)
        out.append({
            "model": name, "tasks": len(mine), "cuts": ",".join(map(str, cuts)),
            "fallbacks": sum(r["fallback"] for r in mine),
            "mean_ms": statistics.fmean(measured), "p50_ms": percentile(measured, 50),
            "p95_ms": percentile(measured, 95),
            "predicted_ms": predicted,
            "mae_ms": statistics.fmean(abs(r["predicted_total_ms"] - r["measured_total_ms"]) for r in mine),
            # predicted against predicted, like with like
            "speedup_vs_edge_only": statistics.fmean(r["predicted_edge_only_ms"] for r in mine) / predicted,
            "speedup_vs_cloud_only": (statistics.fmean(cloud_only) / statistics.fmean(
                r["predicted_total_ms"] for r in mine if r["predicted_cloud_only_ms"] is not None)) if cloud_only else None,
            "speedup_vs_jpeg_upload": (statistics.fmean(jpeg) / statistics.fmean(
                r["predicted_total_ms"] for r in mine if r.get("predicted_jpeg_upload_ms") is not None)) if jpeg else None,
            **_energy_summary(mine),
        })
    return out


def _energy_summary(rows: list[dict]) -> dict:
    energy = [r["energy_mj_from_measured_times"] for r in rows if r.get("energy_mj_from_measured_times") is not None]
    if not energy:
        return {"energy_mj": None, "energy_saved_vs_edge_only_pct": None}
    edge_only = statistics.fmean(r["predicted_edge_only_energy_mj"] for r in rows)
    predicted = [r["predicted_energy_mj"] for r in rows if r.get("predicted_energy_mj") is not None]
    saved = (100.0 * (1.0 - statistics.fmean(predicted) / edge_only)  # predicted against predicted
             if edge_only and len(predicted) == len(rows) else None)  # a profile may say computing is free
    return {"energy_mj": statistics.fmean(energy), "energy_saved_vs_edge_only_pct": saved}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation between tasks)."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def print_summary(summary: list[dict], out) -> None:
    print(f"\n{'model':<11} {'tasks':>5} {'cuts':<14} {'fallback':>8} {'mean ms':>9} {'p50 ms':>9} "
          f"{'p95 ms':>9} {'pred ms':>9} {'MAE ms':>8} {'vs edge':>8} {'vs cloud':>8} {'vs jpeg':>8} {'mJ':>8} "
          f"{'saved':>6}", file=out)
    for s in summary:
        vs_cloud = "-" if s["speedup_vs_cloud_only"] is None else f"{s['speedup_vs_cloud_only']:.2f}x"
        vs_jpeg = "-" if s.get("speedup_vs_jpeg_upload") is None else f"{s['speedup_vs_jpeg_upload']:.2f}x"
        saved = s.get("energy_saved_vs_edge_only_pct")
        energy = ("-" if s.get("energy_mj") is None else f"{s['energy_mj']:.1f}",
                  "-" if saved is None else f"{saved:.0f}%")
        print(f"{s['model']:<11} {s['tasks']:>5} {s['cuts'][:14]:<14} {s['fallbacks']:>8} "
              f"{s['mean_ms']:>9.1f} {s['p50_ms']:>9.1f} {s['p95_ms']:>9.1f} {s['predicted_ms']:>9.1f} "
              f"{s['mae_ms']:>8.1f} {s['speedup_vs_edge_only']:>7.2f}x {vs_cloud:>8} {vs_jpeg:>8} {energy[0]:>8} "
              f"{energy[1]:>6}", file=out)
    print("vs edge, vs cloud, vs jpeg: the chosen cuts' predicted latency against the predicted edge-only, "
          "cloud-only (float32) and JPEG-upload (jpeg90 at cut 0, with --image) latency (predictions on both "
          "sides: those are not run)", file=out)
    if any(s.get("energy_mj") is not None for s in summary):
        print("mJ: the edge's energy, modelled from the measured times and the power table (not "
              "measured); saved: the chosen cuts' predicted energy against the predicted energy of "
              "running everything on the edge", file=out)
