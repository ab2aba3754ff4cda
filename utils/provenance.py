"""Where a number came from: commit, CPU, library versions, threads. Every CSV has it beside it:
NAME.csv stays a plain CSV (any CSV reader reads it), NAME.provenance.json holds its provenance."""
from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import subprocess
from pathlib import Path

import sklearn
import torch

REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str:
    """The short commit, with "-dirty" when tracked files differ from it: a figure made from
    uncommitted code (or predictors) says so."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=7"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def process_age_s() -> float | None:
    """Wall seconds since this process started (Linux's /proc), None where that cannot be read."""
    try:
        stat = Path("/proc/self/stat").read_text()
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime: after "pid (comm)"
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def provenance(**extra) -> dict:
    """Made when a command writes its results, so `run_s` (the command's wall time so far) is how
    long the command took; a caller that times its own run passes `run_s` and that wins."""
    age_s = process_age_s()
    return {"commit": git_commit(), "cpu": cpu_model(), "torch": torch.__version__,
            "sklearn": sklearn.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **({} if age_s is None else {"run_s": round(age_s)}), **extra}


def provenance_path(csv_path: str | Path) -> Path:
    """The sidecar of NAME.csv: NAME.provenance.json, in the same folder."""
    path = Path(csv_path)
    return path.with_name(f"{path.stem}.provenance.json")


def write_csv_with_provenance(path: Path, rows: list[dict], columns: list[str], meta: dict) -> None:
    """A plain CSV (header row, then rows) and its provenance beside it in NAME.provenance.json;
    the folder is made if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    provenance_path(path).write_text(json.dumps(meta, indent=2, default=str) + "\n")


def read_provenance(csv_path: str | Path) -> dict:
    """The provenance of a CSV: its sidecar, or (a CSV written before the sidecars) its leading
    '# key: value' lines; {} when it has neither."""
    sidecar = provenance_path(csv_path)
    if sidecar.is_file():
        return json.loads(sidecar.read_text())
    meta = {}
    with open(csv_path) as f:
        for line in f:
            if not line.startswith("#"):
                break
            key, _, value = line[1:].strip().partition(": ")
            meta[key] = value
    return meta


def read_csv_rows(csv_path: str | Path) -> list[dict]:
    """The rows of a CSV as dicts (leading '#' lines of an older file skipped)."""
    with open(csv_path, newline="") as f:
        lines = [line for line in f]
    start = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    return list(csv.DictReader(lines[start:]))


def move_comments_to_sidecar(csv_path: str | Path) -> bool:
    """Convert a CSV that starts with '# key: value' lines: the lines go to its sidecar, the CSV
    keeps the rest byte for byte. True when there was something to move."""
    path = Path(csv_path)
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    n = next((i for i, line in enumerate(lines) if not line.startswith("#")), len(lines))
    if n == 0:
        return False
    meta = read_provenance(path) if not provenance_path(path).is_file() else {}
    provenance_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    path.write_text("".join(lines[n:]))
    return True
