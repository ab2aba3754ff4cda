import itertools
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from torch import nn

from predictor import LatencyPredictor, Link, send_ms
from predictor.features import FEATURES, build_op, op_features, op_spec
from predictor.ops import analyze
from predictor.planner import ChainPlanner
from predictor.profiler import QUICK, CacheFlusher, profile_chains
from predictor.regression import CONFIG_DIR, KindModel, fit_kind, load_sklearn_model


def constant_predictor(role: str, ms_per_op: float) -> LatencyPredictor:
    """Every computing op costs ms_per_op: makes predicted totals easy to work out by hand."""
    kinds = {kind: KindModel(names, (0.0,) * len(names), ms_per_op) for kind, names in FEATURES.items()}
    return LatencyPredictor(role, kinds, {})


def test_conv_features_count_the_real_work():
    conv = nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2)
    spec = op_spec(conv, (1, 3, 224, 224))
    f = op_features(spec, (1, 64, 55, 55))
    assert f["macs"] == 64 * 55 * 55 * 3 * 11 * 11
    assert f["weight_elems"] == 64 * 3 * 11 * 11
    assert f["im2col_elems"] == 55 * 55 * 3 * 11 * 11
    dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
    assert op_features(op_spec(dw, (1, 32, 112, 112)), (1, 32, 112, 112))["macs"] == 32 * 112 * 112 * 9


def test_spec_rebuilds_an_equivalent_layer():
    conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
    layer, (x,) = build_op(op_spec(conv, (1, 16, 20, 20)))
    assert layer(x).shape == conv(x).shape


def test_analyze_counts_bytes_of_every_cut(chain_models):
    info = analyze(chain_models["alex_net"])
    assert info.cut_bytes(0) == 3 * 224 * 224 * 4
    assert info.cut_bytes(1) == 64 * 55 * 55 * 4
    assert info.cut_bytes(len(info.units)) == 0
    assert info.units[-1].out_shape == (1, 1000)
    mobile = analyze(chain_models["mobile_net"])
    adds = [op for u in mobile.units for op in u.ops if op.kind == "add"]
    assert len(adds) == 10  # one per residual block


def test_cut_table_matches_the_formula(chain_models):
    model = chain_models["le_net"]
    planner = ChainPlanner(model, constant_predictor("edge", 2.0), constant_predictor("cloud", 0.5))
    n, bw, rtt = len(model), 10.0, 4.0
    free = {"dropout", "flatten"}
    ops = [sum(op.kind not in free for op in u.ops) for u in analyze(model).units]
    for cut in planner.table(Link(bw, rtt)):
        k = cut.cut_point
        assert cut.edge_ms == pytest.approx(2.0 * sum(ops[:k]))
        if k == n:
            assert (cut.transfer_ms, cut.cloud_ms, cut.transfer_bytes) == (0.0, 0.0, 0)
            assert cut.total_ms == cut.edge_ms  # all on the edge: no transfer, no RTT
        else:
            assert cut.transfer_ms == pytest.approx(cut.transfer_bytes * 8 / (bw * 1e6) * 1e3 + rtt)
            assert cut.cloud_ms == pytest.approx(0.5 * sum(ops[k:]))
            assert cut.total_ms == pytest.approx(cut.edge_ms + cut.transfer_ms + cut.cloud_ms)


def test_best_cut_is_the_minimum_of_the_table(chain_models):
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    for model in chain_models.values():
        planner = ChainPlanner(model, edge, cloud, edge_slowdown=3.0)
        for bw, rtt in itertools.product((0.1, 1.1, 5.85, 18.88, 100.0, 1000.0), (0.0, 50.0)):
            table = planner.table(Link(bw, rtt))
            best = planner.best(Link(bw, rtt))
            assert best.total_ms == min(c.total_ms for c in table)
            assert best == min(table, key=lambda c: (c.total_ms, c.cut_point))


def test_extreme_bandwidths_move_the_cut_to_the_ends(chain_models):
    edge, cloud = constant_predictor("edge", 5.0), constant_predictor("cloud", 0.1)
    planner = ChainPlanner(chain_models["vgg_net"], edge, cloud)
    assert planner.best_cut_point(Link(1e9)) == 0             # a free link: all on the faster cloud
    assert planner.best_cut_point(Link(1e-6)) == planner.num_units  # no link: all on the edge


def test_bad_link_is_refused(chain_models):
    planner = ChainPlanner(chain_models["le_net"], constant_predictor("e", 1), constant_predictor("c", 1))
    with pytest.raises(ValueError, match="Mbit/s"):  # the link checks itself when made
        planner.best(Link(0))
    with pytest.raises(ValueError, match="RTT"):
        planner.table(Link(10, -1))
    with pytest.raises(ValueError, match="outside 0..13"):
        planner.cut(14, Link(10))


def test_transfer_units():
    assert send_ms(10**6, 8.0) == pytest.approx(1000.0)  # 1 MB at 8 Mbit/s is one second


def test_fit_recovers_a_linear_law():
    rng = np.random.default_rng(0)
    macs = rng.uniform(1e6, 1e9, 40)
    df = pd.DataFrame({"macs": macs, "in_elems": rng.uniform(1e3, 1e6, 40),
                       "out_elems": rng.uniform(1e3, 1e6, 40)})
    df["latency_ms"] = 0.05 + 2e-8 * df.macs
    _, plain, held_out = fit_kind(df, "linear")
    assert plain.intercept == pytest.approx(0.05, rel=1e-3)
    assert dict(zip(plain.features, plain.coef))["macs"] == pytest.approx(2e-8, rel=1e-3)
    assert held_out["mape_pct"] < 0.1


def test_shipped_predictors_load_and_predict(chain_models):
    for role in ("edge", "cloud"):
        predictor = LatencyPredictor.load(role)
        assert set(predictor.kinds) == set(FEATURES)
        for key in ("commit", "cpu", "torch", "sklearn", "threads"):
            assert key in predictor.meta
        planner = ChainPlanner(chain_models["alex_net"], predictor, predictor)
        assert all(ms >= 0 for ms in planner.edge_unit_ms)
        assert planner.edge_prefix_ms[-1] > 0


def test_pickle_from_another_sklearn_is_refit_with_a_warning(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR / "edge", config / "edge")
    document = json.loads((config / "edge" / "predictors.json").read_text())
    document["meta"]["sklearn"] = "0.0.1"
    (config / "edge" / "predictors.json").write_text(json.dumps(document))
    (config / "edge" / "conv.pkl").write_bytes(b"not a pickle this version could read")
    with pytest.warns(UserWarning, match="refitting"):
        model = load_sklearn_model("edge", "conv", config_dir=config)
    expected = document["kinds"]["conv"]["coef"]
    assert np.allclose(model.coef_, expected, rtol=1e-6, atol=1e-12)


def test_matching_pickle_loads_as_is():
    model = load_sklearn_model("edge", "linear")
    document = json.loads((CONFIG_DIR / "edge" / "predictors.json").read_text())
    assert np.allclose(model.coef_, document["kinds"]["linear"]["coef"])


@pytest.mark.slow
def test_op_by_op_profile_reproduces_the_forward_pass(chain_models):
    settings = QUICK.__class__(resolutions=(224,), mobilenet_widths=(), linear_sweep=False,
                               warmup=0, repeats=1)
    rows = profile_chains([("mobile_net@224", chain_models["mobile_net"], (1, 3, 224, 224))],
                          settings, CacheFlusher(2**20))
    kinds = {r["spec"]["kind"] for r in rows}
    assert kinds == {"conv", "dwconv", "batchnorm", "relu", "add", "avgpool", "linear"}
    assert all(r["latency_ms"] > 0 for r in rows)


@pytest.mark.slow
def test_quick_profile_refits_from_scratch(tmp_path):
    from predictor.deploy import profile_and_fit
    held_out = profile_and_fit("edge", threads=1, quick=True, dataset_dir=tmp_path / "dataset",
                               config_dir=tmp_path / "config")
    assert set(held_out) == set(FEATURES)
    for kind in FEATURES:
        df = pd.read_csv(tmp_path / "dataset" / "edge" / f"{kind}_lat.csv")  # plain CSV
        assert (tmp_path / "dataset" / "edge" / f"{kind}_lat.provenance.json").is_file()
        assert len(df) > 0 and (df.latency_ms > 0).all()
        assert (tmp_path / "config" / "edge" / f"{kind}.pkl").exists()
    predictor = LatencyPredictor.load("edge", config_dir=tmp_path / "config")
    assert predictor.meta["threads"] == 1 and predictor.meta["quick"] is True
