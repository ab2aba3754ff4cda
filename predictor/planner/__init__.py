"""The partition search behind one interface (`Planner`): its values (`Link`, `Objective`,
`Plan`), the chain scan and the DAG minimum cut."""
from models.split import SplitModel
from predictor.planner.base import Planner
from predictor.planner.chain import ChainPlanner
from predictor.planner.codec_costs import CodecTable, ImageInfo, allowed_codecs
from predictor.planner.dag import DagPlanner
from predictor.planner.values import LATENCY, Link, Objective, Plan, send_ms
from predictor.regression import LatencyPredictor


def planner_for(model: SplitModel, edge: LatencyPredictor, cloud: LatencyPredictor,
                edge_slowdown: float = 1.0) -> Planner:
    """The partition search for `model`: a scan over its cut points when it is a path (a
    chain), else a minimum cut over its graph."""
    if model.is_path:
        return ChainPlanner(model, edge, cloud, edge_slowdown)  # type: ignore[arg-type]
    return DagPlanner(model, edge, cloud, edge_slowdown)  # type: ignore[arg-type]


__all__ = ["LATENCY", "ChainPlanner", "CodecTable", "DagPlanner", "ImageInfo", "allowed_codecs",
            "Link", "Objective", "Plan", "Planner", "planner_for", "send_ms"]
