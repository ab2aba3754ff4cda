"""Bandwidth traces: a changing network replayed in time (columns time_s,bandwidth_mbps)."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path


class TraceError(ValueError):
    pass


@dataclass(frozen=True)
class TracePoint:
    time_s: float          # from the start of the run
    bandwidth_mbps: float  # holds from time_s until the next point (the last one holds forever)


def load_trace(path: str | Path) -> list[TracePoint]:
    """Read a trace CSV ('#' lines are comments); times must start at 0 and increase."""
    try:
        with open(path, newline="") as f:
            numbered = [(n, line) for n, line in enumerate(f, start=1)
                        if line.strip() and not line.lstrip().startswith("#")]
    except OSError as e:
        raise TraceError(f"cannot read bandwidth trace {path}: {e.strerror or e}") from None
    line_numbers = [n for n, _ in numbered[1:]]  # of the data rows, in the file as the user sees it
    reader = csv.DictReader(line for _, line in numbered)
    if reader.fieldnames is None or not {"time_s", "bandwidth_mbps"} <= set(reader.fieldnames):
        raise TraceError(f"{path}: a bandwidth trace needs the columns time_s,bandwidth_mbps")
    points: list[TracePoint] = []
    for line_no, row in zip(line_numbers, reader):
        try:
            point = TracePoint(float(row["time_s"]), float(row["bandwidth_mbps"]))
        except (TypeError, ValueError):
            raise TraceError(f"{path}: line {line_no} is not two numbers: {row}") from None
        if not (math.isfinite(point.bandwidth_mbps) and point.bandwidth_mbps > 0):
            raise TraceError(f"{path}: line {line_no}: bandwidth must be > 0 Mbit/s")
        if points and point.time_s <= points[-1].time_s:
            raise TraceError(f"{path}: line {line_no}: time_s must increase")
        points.append(point)
    if not points or points[0].time_s != 0:
        raise TraceError(f"{path}: a bandwidth trace starts at time_s = 0")
    return points


def rate_at(points: list[TracePoint], time_s: float) -> float:
    """The trace's bandwidth at `time_s` after the start."""
    current = points[0].bandwidth_mbps
    for point in points:
        if point.time_s > time_s:
            break
        current = point.bandwidth_mbps
    return current
