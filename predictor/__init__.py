"""Latency predictors and the partition search.

dataset/<role>/<kind>_lat.csv  profile of this machine's layers (deployment.py writes it)
config/<role>/                 fitted regressions: predictors.json (plain coefficients + provenance)
                               and <kind>.pkl (the scikit-learn objects)
"""
from models.dag import DagModel
from predictor.dag_plan import DagPlanner
from predictor.partition import Cut, Planner, transfer_ms
from predictor.regression import LatencyPredictor


def planner_for(model, edge: LatencyPredictor, cloud: LatencyPredictor, edge_slowdown: float = 1.0):
    """The partition search for `model`: a Planner (chain) or a DagPlanner (traced graph)."""
    if isinstance(model, DagModel):
        return DagPlanner(model, edge, cloud, edge_slowdown)
    return Planner.for_model(model, edge, cloud, edge_slowdown)


__all__ = ["Cut", "DagPlanner", "LatencyPredictor", "Planner", "planner_for", "transfer_ms"]
