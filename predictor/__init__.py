"""Latency predictors and the partition search.

dataset/<role>/<kind>_lat.csv  profile of this machine's layers (deployment.py writes it)
config/<role>/                 fitted regressions: predictors.json (plain coefficients + provenance)
                               and <kind>.pkl (the scikit-learn objects)
"""
from predictor.partition import Cut, Planner, transfer_ms
from predictor.regression import LatencyPredictor

__all__ = ["Cut", "LatencyPredictor", "Planner", "transfer_ms"]
