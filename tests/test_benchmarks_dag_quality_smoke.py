"""The DAG decision-quality benchmark runs end to end on a tiny setting (ResNet-18, one bandwidth,
one run per median, two sampled partitions), and its candidate partitions are what it says.
Structure and answers only: no timing assertion (chosen/oracle is a measurement, not a property)."""
from pathlib import Path

import pytest

from benchmarks import dag_decision_quality as dq
from predictor.planner.dag_cut import is_valid

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each


def read_rows(path):
    """(the provenance beside the CSV as '# key: value' lines, the rows as dicts of strings); the
    CSV itself is plain: its first line is the header."""
    from utils.provenance import read_csv_rows, read_provenance
    assert not Path(path).read_text().startswith("#"), "provenance belongs beside the CSV, not in it"
    return [f"# {k}: {v}" for k, v in read_provenance(path).items()], read_csv_rows(path)


@pytest.fixture(scope="module")
def res_net():
    from models.dag import get_dag_model
    return get_dag_model("res_net")


def test_candidates_are_valid_distinct_seeded_and_cut_inside_blocks(res_net):
    candidates = dq.model_candidates(res_net, sample=6, seed=0)
    edges, n = res_net.edges(), len(res_net)
    assert all(is_valid(edges, c.edge_nodes, res_net.input_name) for c in candidates)
    assert len({c.edge_nodes for c in candidates}) == len(candidates)
    assert [c.origin for c in candidates[:2]] == ["cloud-only", "edge-only"]
    assert candidates[0].edge_nodes == {res_net.input_name} and candidates[1].edge_nodes == set(res_net.nodes)
    single = [k for k in range(1, n) if len(res_net.prefix(k).crossing) == 1]
    assert [c.prefix for c in candidates if c.origin == "boundary"] == single
    sampled = [c for c in candidates if c.origin in ("prefix", "random")]
    assert len(sampled) == 6
    assert all(len(res_net.crossing(c.edge_nodes)) >= 2 for c in sampled if c.origin == "prefix")
    assert all(dq.prefix_of(res_net, c.edge_nodes) is None for c in sampled if c.origin == "random")
    again = dq.model_candidates(res_net, sample=6, seed=0)
    assert [c.edge_nodes for c in again] == [c.edge_nodes for c in candidates]


def test_with_codecs_multiplies_the_partitions_by_the_planners_codecs(res_net, china_jpg):
    from benchmarks.measure import model_source, predictors, with_codecs
    from predictor.planner import DagPlanner
    edge, cloud, _, _ = predictors(None)
    planner = DagPlanner(res_net, edge, cloud, 2.0)
    partitions = dq.model_candidates(res_net, sample=2, seed=0)
    source, _ = model_source(res_net, "auto", china_jpg)
    planner.use_codecs("auto", 0.0, source, True)
    candidates = with_codecs(planner, partitions)
    assert [c.codec for c in candidates if c.origin == "cloud-only"] == ["none", "zstd", "pixels", "webp_lossless", "file"]
    assert [c.codec for c in candidates if c.origin == "edge-only"] == ["none"]
    inner = [c for c in candidates if c.origin not in ("cloud-only", "edge-only", "jpeg-upload")]
    assert [c.codec for c in inner] == ["none", "zstd"] * (len(partitions) - 2)
    assert [(c.origin, c.codec, c.in_pool) for c in candidates if not c.in_pool] == [("jpeg-upload", "jpeg90", False)]
    assert len({c.key for c in candidates}) == len(candidates)
    planner.use_codecs("none", 0.0, None, True)
    assert [c.partition for c in with_codecs(planner, partitions)] == [c.partition for c in partitions]


def test_dag_decision_quality_smallest(tmp_path):
    from net.wire.codecs import EXACT
    out = tmp_path / "dq.csv"
    rows = dq.main(["--models", "res_net", "--bandwidths", "100", "--repeats", "1", "--sample", "2",
                    "--edge-slowdown", "2", "--out", str(out)])
    meta, written = read_rows(out)
    assert len(rows) == len(written) == 1
    for key in ("commit", "cpu", "torch", "edge_slowdown: 2", "pinning", "sample: 2", "seed: 0", "repeats: 1",
                "rtt: 0", "predictors: cloud: its own profile", "all_pred_error_median_pct", "codec: auto",
                "geomean_speedup_vs_none", "geomean_chosen_over_jpeg90", "answers_ok"):
        assert any(line.startswith(f"# {key}") for line in meta), key
    row = written[0]
    assert set(dq.COLUMNS) <= set(row)
    assert (row["model"], row["bandwidth"], float(row["bandwidth_mbps"])) == ("res_net", "100", 100.0)
    assert float(row["rtt_ms"]) == 0.0 and int(row["rounds"]) == 1
    assert (row["codec_mode"], float(row["accuracy_budget"])) == ("auto", 0.0)
    runs, lossy_runs = int(row["runs"]), int(row["lossy_runs"])
    assert runs > 0 and lossy_runs == 2  # the jpeg90 upload: screened once, one round
    assert int(row["answers_ok"]) == runs - lossy_runs  # every exact answer equals local inference
    assert int(row["measured"]) + int(row["skipped"]) == int(row["candidates"])
    for key in ("chosen_ms", "oracle_ms", "ratio", "edge_only_ms", "cloud_only_ms", "speedup_vs_edge",
                "speedup_vs_cloud", "vs_best_endpoint", "predicted_chosen_ms", "none_plan_ms", "speedup_vs_none",
                "jpeg90_ms", "chosen_over_jpeg90"):
        assert float(row[key]) > 0, key
    assert float(row["ratio"]) >= 1.0 and float(row["ratio_min"]) <= float(row["ratio_max"])
    assert row["chosen_codec"] in EXACT and row["oracle_codec"] in EXACT  # budget 0: exact plans only
    assert float(row["chosen_over_jpeg90"]) == pytest.approx(float(row["chosen_ms"]) / float(row["jpeg90_ms"]),
                                                             abs=2e-3)

    _, parts = read_rows(tmp_path / "dq_partitions.csv")
    assert set(dq.PARTITION_COLUMNS) <= set(parts[0])
    assert len(parts) == int(row["candidates"])
    measured = [p for p in parts if p["phase"] == "measured"]
    assert len(measured) == int(row["measured"])
    for p in measured:  # every kept candidate measured alike: one run a round
        assert int(p["runs"]) == 1
    # the chosen, the oracle and the none plan are among the measured; the oracle has the least
    # median of the pool (exact plans)
    key = lambda p: (int(p["edge_nodes"]), p["crossing"], p["codec"])  # noqa: E731
    chosen = (int(row["chosen_edge_nodes"]), row["chosen_crossing"], row["chosen_codec"])
    oracle = (int(row["oracle_edge_nodes"]), row["oracle_crossing"], row["oracle_codec"])
    none_plan = (int(row["none_plan"]), row["none_plan_crossing"], "none")
    assert {chosen, oracle, none_plan} <= {key(p) for p in measured}
    pool = [p for p in measured if p["in_oracle_pool"] == "True"]
    assert all(p["lossy"] == "False" for p in pool)
    least = min(pool, key=lambda p: float(p["total_ms"]))
    assert float(least["total_ms"]) == float(row["oracle_ms"]) or key(least) == oracle
    none_row = next(p for p in measured if key(p) == none_plan)
    assert float(none_row["total_ms"]) == pytest.approx(float(row["none_plan_ms"]), abs=0.01)
    (jpeg,) = [p for p in parts if p["codec"] == "jpeg90"]  # the baseline, beside the pool
    assert (jpeg["origin"], jpeg["phase"], jpeg["in_oracle_pool"], jpeg["lossy"]) == \
        ("jpeg-upload", "measured", "False", "True")
    # cloud-only and edge-only are measured; multi-tensor requests went through the real cloud
    assert {"cloud-only", "edge-only"} <= {p["origin"] for p in measured}
    assert any(int(p["tensors"]) >= 2 for p in measured)
    assert any(p["codec"] == "zstd" and int(p["tensors"]) >= 2 for p in measured)
