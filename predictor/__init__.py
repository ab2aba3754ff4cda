"""Latency predictors and the partition search.

dataset/<role>/<kind>_lat.csv  profile of this machine's layers (deployment.py writes it)
config/<role>/                 fitted regressions: predictors.json (plain coefficients + provenance)
                               and <kind>.pkl (the scikit-learn objects)
planner/                       the partition search: Link, Objective, Plan; chain scan; DAG min cut
"""
from predictor.planner import LATENCY, Link, Objective, Plan, Planner, planner_for, send_ms
from predictor.regression import LatencyPredictor

__all__ = ["LATENCY", "LatencyPredictor", "Link", "Objective", "Plan", "Planner", "planner_for", "send_ms"]
