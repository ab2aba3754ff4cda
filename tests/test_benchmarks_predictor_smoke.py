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
    assert df.cached_baseline_ms.isna().tolist() == [True, False]  # the DAG's fair baseline: a cached graph
    assert (df.speedup_vs_cached.dropna() > 0).all()
    # with auto's exact codecs and the photo in hand: none, zstd, pixels, webp_lossless, file
    assert (df.auto_us > 0).all() and df.auto_codecs.tolist() == [5, 5]


def test_predictor_accuracy_smoke(tmp_path):
    out = tmp_path / "pa.csv"
    predictor_accuracy.main(["--role", "cloud", "--folds", "2", "--models", "le_net", "mobile_net", "--repeats", "1",
                             "--out", str(out)])
    df = pd.read_csv(out)
    kinds = {"conv", "dwconv", "linear", "maxpool", "avgpool", "batchnorm", "relu", "add", "cat"}
    assert set(df.kind) == kinds | {"all"}
    # the random-rows evaluation scores every regressor of a kind on all of that kind's profile rows
    for kind, rows in df[df.evaluation == "2-fold (random rows)"].groupby("kind"):
        assert set(rows.n) == {len(read_dataset(DATASET_DIR / "cloud" / f"{kind}_lat.csv"))}
    scored = df[df.mape_pct.notna()]  # (a held-out kind with no rows left to fit is not scored)
    assert ((scored.within_10_pct <= scored.within_20_pct) & (scored.within_20_pct <= 100)).all()
    assert set(df.evaluation) == {"2-fold (random rows)", "leave-one-model-out", "in-sample sum",
                                  "in-sample sum (le_net@224)", "in-sample sum (mobile_net@224)"}
    lomo = df[df.evaluation == "leave-one-model-out"]
    assert set(lomo.held_out_model) == {"le_net", "mobile_net"}
    assert (lomo[lomo.kind == "conv"].n_train > 0).all()
    # the in-sample sums: one per kind, over all its rows, and one per model over its own pass
    sums = df[df.evaluation.str.startswith("in-sample sum")]
    assert set(sums[sums.kind != "all"].kind) == kinds and (sums.sum_ratio > 0).all()
    assert set(sums[sums.kind == "all"].held_out_model) == {"le_net", "mobile_net"}
    # only GoogLeNet concatenates: no fit of that kind without it, said so
    cat = [r for r in predictor_accuracy.leave_one_model_out("cloud", DATASET_DIR, ["google_net"]) if r["kind"] == "cat"]
    assert cat[0]["n_train"] == 0 and cat[0]["mape_pct"] == ""

    models = pd.read_csv(tmp_path / "pa_models.csv")
    assert list(dict.fromkeys(models.model)) == ["le_net", "mobile_net", "mnas_net"]
    le = models[models.model == "le_net"]
    assert list(le.prefix_units) == list(range(1, 14)) and le.predicted_held_out_ms.notna().all()
    assert models[models.model == "mobile_net"].predicted_held_out_ms.notna().all()  # EfficientNet-Lite0 has dwconvs too
    mnas = models[models.model == "mnas_net"]
    assert (mnas.evaluation == "never profiled").all() and (mnas.measured_ms > 0).all()
    assert (mnas.predicted_in_sample_ms > 0).all()


def test_mnas_net_chain_is_torchvisions_mnasnet():
    from predictor.ops import analyze
    chain = predictor_accuracy.mnas_net()  # checks its output against torchvision's MNASNet itself
    kinds = {op.kind for unit in analyze(chain).units for op in unit.ops}
    assert kinds <= {"conv", "dwconv", "batchnorm", "relu", "add", "avgpool", "flatten", "dropout", "linear"}
    assert "add" in kinds and "dwconv" in kinds
