"""Benchmarks: each `python -m benchmarks.NAME` prints a table and writes a CSV (provenance beside
it, NAME.provenance.json) under runs/benchmarks/ (git-ignored): a fresh run never overwrites the
results that ship in benchmarks/results/. To replace a shipped one, name it: --out
benchmarks/results/NAME.csv."""
from pathlib import Path

SHIPPED_RESULTS_DIR = Path(__file__).resolve().parent / "results"
RESULTS_DIR = Path(__file__).resolve().parent.parent / "runs" / "benchmarks"  # fresh results go here
