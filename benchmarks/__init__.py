"""Benchmarks: each `python -m benchmarks.NAME` prints a table and writes a CSV under benchmarks/results/."""
