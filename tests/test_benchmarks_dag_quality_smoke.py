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


def test_dag_decision_quality_smallest(tmp_path):
    out = tmp_path / "dq.csv"
    rows = dq.main(["--models", "res_net", "--bandwidths", "100", "--repeats", "2", "--sample", "2",
                    "--edge-slowdown", "2", "--out", str(out)])
    meta, written = read_rows(out)
    assert len(rows) == len(written) == 1
    for key in ("commit", "cpu", "torch", "edge_slowdown: 2", "pinning", "sample: 2", "seed: 0", "repeats: 2",
                "rtt: 0", "predictors: cloud: its own profile", "all_pred_error_median_pct"):
        assert any(line.startswith(f"# {key}") for line in meta), key
    row = written[0]
    assert set(dq.COLUMNS) <= set(row)
    assert (row["model"], row["bandwidth"], float(row["bandwidth_mbps"])) == ("res_net", "100", 100.0)
    assert float(row["rtt_ms"]) == 0.0 and int(row["rounds"]) == 2
    runs = int(row["runs"])
    assert runs > 0 and int(row["answers_ok"]) == runs  # every answer equals local inference
    assert int(row["measured"]) + int(row["skipped"]) == int(row["candidates"])
    for key in ("chosen_ms", "oracle_ms", "ratio", "edge_only_ms", "cloud_only_ms", "speedup_vs_edge",
                "speedup_vs_cloud", "vs_best_endpoint", "predicted_chosen_ms"):
        assert float(row[key]) > 0
    assert float(row["ratio"]) >= 1.0 and float(row["ratio_min"]) <= float(row["ratio_max"])

    _, parts = read_rows(tmp_path / "dq_partitions.csv")
    assert set(dq.PARTITION_COLUMNS) <= set(parts[0])
    assert len(parts) == int(row["candidates"])
    measured = [p for p in parts if p["phase"] == "measured"]
    assert len(measured) == int(row["measured"])
    for p in measured:  # every kept candidate measured alike: one run a round, each answer right
        assert int(p["runs"]) == 2
    # the chosen and the oracle are among the measured; the oracle has the least median
    key = lambda p: (int(p["edge_nodes"]), p["crossing"])  # noqa: E731
    chosen = (int(row["chosen_edge_nodes"]), row["chosen_crossing"])
    oracle = (int(row["oracle_edge_nodes"]), row["oracle_crossing"])
    assert chosen in {key(p) for p in measured} and oracle in {key(p) for p in measured}
    least = min(measured, key=lambda p: float(p["total_ms"]))
    assert float(least["total_ms"]) == float(row["oracle_ms"]) or key(least) == oracle
    # cloud-only and edge-only are measured; multi-tensor requests went through the real cloud
    assert {"cloud-only", "edge-only"} <= {p["origin"] for p in measured}
    assert any(int(p["tensors"]) >= 2 for p in measured)
