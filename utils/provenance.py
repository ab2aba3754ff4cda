"""Where a number came from: commit, CPU, library versions, threads. Every CSV carries it."""
from __future__ import annotations

import csv
import datetime
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


def provenance(**extra) -> dict:
    return {"commit": git_commit(), "cpu": cpu_model(), "torch": torch.__version__,
            "sklearn": sklearn.__version__, "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            **extra}


def write_csv_with_provenance(path: Path, rows: list[dict], columns: list[str], meta: dict) -> None:
    """A CSV whose first lines are '# key: value' comments (read back with comment='#'); its
    folder is made if missing."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        for key, value in meta.items():
            f.write(f"# {key}: {value}\n")
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
