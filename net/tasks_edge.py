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

from models import MODEL_NAMES, ChainModel, get_model
from models.dag import DagModel
from net.edge_client import CloudClient, CloudRefused, CloudUnavailable
from net.edge_runner import collaborative_inference, dag_collaborative_inference
from net.link import LinkPacer
from net.monitor_client import measure_bandwidth_mbps
from net.trace import TracePoint
from predictor import DagPlanner, LatencyPredictor, Planner, planner_for
from predictor.energy import EdgePower

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
                 pacer: LinkPacer | None, rtt_ms: float, interval_s: float, token: bytes | None = None):
        self.addresses, self.pacer, self.rtt_ms, self.token = addresses, pacer, rtt_ms, token
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
            candidates = [CloudClient(h, p, pacer=self.pacer, rtt_ms=self.rtt_ms, token=self.token)
                          for h, p in self.addresses]
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
    objective: str = "latency"
    power: EdgePower | None = None  # the edge's powers: energy in the rows, and the energy objective
    _models: dict[str, tuple[ChainModel | DagModel, Planner | DagPlanner]] = field(default_factory=dict)

    def model(self, name: str) -> tuple[ChainModel | DagModel, Planner | DagPlanner]:
        """Built once per name, warmed up, fingerprinted: tasks time inference, not start-up."""
        if name not in self._models:
            x = self.input_for(name)
            model = get_model(name, self.weights.get(name), x.device)
            planner = planner_for(model, self.edge, self.cloud, self.edge_slowdown)
            with torch.no_grad():
                model(x.clone())
            model.fingerprint
            self._models[name] = (model, planner)
        return self._models[name]

    def input_for(self, name: str) -> torch.Tensor:
        return self.x[name] if isinstance(self.x, dict) else self.x

    def run_task(self, task: int, name: str, bandwidth_mbps: float | None, started: float) -> dict:
        model, planner = self.model(name)
        infer = dag_collaborative_inference if isinstance(model, DagModel) else collaborative_inference
        start_s = time.monotonic() - started
        if bandwidth_mbps is None:  # never measured: the cloud is unreachable, the edge does all
            report = infer(model, planner, self.input_for(name), None, None, self.rtt_ms, edge_slowdown=self.edge_slowdown,
                           unavailable="uplink never measured: cloud unreachable", power=self.power)
        else:
            report = infer(model, planner, self.input_for(name), self.client, bandwidth_mbps, self.rtt_ms,
                           edge_slowdown=self.edge_slowdown, objective=self.objective, power=self.power)
        p, m = report.predicted_ms, report.measured_ms
        n = len(model)
        energy = report.energy_mj or {}
        edge_only_energy = None if self.power is None else self.power.energy_mj(planner.edge_only_ms(), 0.0, 0.0)
        return {
            "task": task, "model": name, "start_s": round(start_s, 3),
            "bandwidth_mbps": None if bandwidth_mbps is None else round(bandwidth_mbps, 4),
            "cut_point": report.cut_point, "num_units": n, "cut_layer": report.cut_layer,
            "predicted_edge_ms": p.edge, "predicted_transfer_ms": p.transfer,
            "predicted_cloud_ms": p.cloud, "predicted_total_ms": p.total,
            "measured_edge_ms": m.edge, "measured_transfer_ms": m.transfer,
            "measured_cloud_ms": m.cloud, "measured_total_ms": m.total,
            "overhead_ms": report.overhead_ms, "transfer_bytes": report.transfer_bytes,
            "predicted_edge_only_ms": planner.edge_only_ms(),
            "predicted_cloud_only_ms": planner.cloud_only_ms(bandwidth_mbps, self.rtt_ms) if bandwidth_mbps else None,
            "fallback": report.fallback, "fallback_reason": report.fallback_reason or "",
            "retries": report.retries, "cloud_load": report.cloud_load, "objective": report.objective,
            "predicted_energy_mj": energy.get("predicted"),
            "energy_mj_from_measured_times": energy.get("from_measured_times"),
            "predicted_edge_only_energy_mj": edge_only_energy,
            "top1": report.top5[0][0],
        }


def summarize(rows: list[dict]) -> list[dict]:
    """Per model: tasks, cuts chosen, measured total mean/p50/p95, mean predicted total, mean
    absolute prediction error, the measured speed-up over the predicted edge-only and
    cloud-only latency at the same bandwidth (ratio of their means), and, when the edge's powers
    are known, the mean modelled energy (of the measured times) and the share saved against
    running everything on the edge."""
    out = []
    for name in sorted({r["model"] for r in rows}):
        mine = [r for r in rows if r["model"] == name]
        measured = [r["measured_total_ms"] for r in mine]
        cloud_only = [r["predicted_cloud_only_ms"] for r in mine if r["predicted_cloud_only_ms"] is not None]
        cuts = sorted({r["cut_point"] for r in mine})
        out.append({
            "model": name, "tasks": len(mine), "cuts": ",".join(map(str, cuts)),
            "fallbacks": sum(r["fallback"] for r in mine),
            "mean_ms": statistics.fmean(measured), "p50_ms": percentile(measured, 50),
            "p95_ms": percentile(measured, 95),
            "predicted_ms": statistics.fmean(r["predicted_total_ms"] for r in mine),
            "mae_ms": statistics.fmean(abs(r["predicted_total_ms"] - r["measured_total_ms"]) for r in mine),
            "speedup_vs_edge_only": statistics.fmean(r["predicted_edge_only_ms"] for r in mine) / statistics.fmean(measured),
            "speedup_vs_cloud_only": (statistics.fmean(cloud_only) / statistics.fmean(measured)) if cloud_only else None,
            **_energy_summary(mine),
        })
    return out


def _energy_summary(rows: list[dict]) -> dict:
    energy = [r["energy_mj_from_measured_times"] for r in rows if r.get("energy_mj_from_measured_times") is not None]
    if not energy:
        return {"energy_mj": None, "energy_saved_vs_edge_only_pct": None}
    edge_only = statistics.fmean(r["predicted_edge_only_energy_mj"] for r in rows)
    return {"energy_mj": statistics.fmean(energy),  # a profile may say computing is free: no share then
            "energy_saved_vs_edge_only_pct": 100.0 * (1.0 - statistics.fmean(energy) / edge_only) if edge_only else None}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (no interpolation between tasks)."""
    ordered = sorted(values)
    return ordered[min(len(ordered), max(1, math.ceil(q / 100 * len(ordered)))) - 1]


def print_summary(summary: list[dict], out) -> None:
    print(f"\n{'model':<11} {'tasks':>5} {'cuts':<14} {'fallback':>8} {'mean ms':>9} {'p50 ms':>9} "
          f"{'p95 ms':>9} {'pred ms':>9} {'MAE ms':>8} {'vs edge':>8} {'vs cloud':>8} {'mJ':>8} "
          f"{'saved':>6}", file=out)
    for s in summary:
        vs_cloud = "-" if s["speedup_vs_cloud_only"] is None else f"{s['speedup_vs_cloud_only']:.2f}x"
        saved = s.get("energy_saved_vs_edge_only_pct")
        energy = ("-" if s.get("energy_mj") is None else f"{s['energy_mj']:.1f}",
                  "-" if saved is None else f"{saved:.0f}%")
        print(f"{s['model']:<11} {s['tasks']:>5} {s['cuts'][:14]:<14} {s['fallbacks']:>8} "
              f"{s['mean_ms']:>9.1f} {s['p50_ms']:>9.1f} {s['p95_ms']:>9.1f} {s['predicted_ms']:>9.1f} "
              f"{s['mae_ms']:>8.1f} {s['speedup_vs_edge_only']:>7.2f}x {vs_cloud:>8} {energy[0]:>8} "
              f"{energy[1]:>6}", file=out)
    if any(s.get("energy_mj") is not None for s in summary):
        print("mJ: the edge's energy, modelled from the measured times and the power table (not "
              "measured); saved: against the predicted energy of running everything on the edge", file=out)
