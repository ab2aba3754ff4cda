"""Smoke tests: each predictor benchmark runs on its smallest setting and writes its CSV.
No timing is asserted here; the figures live in the README."""
import pandas as pd
import pytest

from benchmarks import decision_time, model_latency, predictor_accuracy
from predictor.regression import DATASET_DIR, read_dataset

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each


def test_model_latency_smoke(tmp_path):
    out = tmp_path / "ml.csv"
    model_latency.main(["--role", "edge", "--models", "le_net", "--repeats", "1", "--out", str(out)])
    df = pd.read_csv(out)
    assert list(df.prefix_units) == list(range(1, 14))
    assert {"predicted_ms", "measured_ms", "error_pct"} <= set(df.columns)


def test_decision_time_smoke(tmp_path):
    out = tmp_path / "dt.csv"
    decision_time.main(["--models", "le_net", "res_net", "--repeats", "11", "--naive-repeats", "1", "--out", str(out)])
    df = pd.read_csv(out)  # (each row also asserted that both searches agree)
    assert list(df.model) == ["le_net", "res_net"] and (df.speedup > 0).all()
    assert df.baseline.str.contains("networkx").tolist() == [False, True]


def test_predictor_accuracy_smoke(tmp_path):
    out = tmp_path / "pa.csv"
    predictor_accuracy.main(["--role", "cloud", "--folds", "2", "--out", str(out)])
    df = pd.read_csv(out)
    assert set(df.kind) == {"conv", "dwconv", "linear", "maxpool", "avgpool", "batchnorm", "relu", "add", "cat"}
    # every regressor of a kind is scored on all of that kind's profile rows, and the shares agree
    for kind, rows in df.groupby("kind"):
        assert set(rows.n) == {len(read_dataset(DATASET_DIR / "cloud" / f"{kind}_lat.csv"))}
    assert ((df.within_10_pct <= df.within_20_pct) & (df.within_20_pct <= 100)).all()
    ours = df[df.regressor == "linear_weighted (ours)"].set_index("kind")
    assert (ours.mape_pct < 100).all()  # a fit that is off by more than the latencies would be no fit
