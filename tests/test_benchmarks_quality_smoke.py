"""The decision-quality benchmark and the paper figure run end to end on their smallest setting.
Structure only: no timing assertion (chosen/oracle is a measurement, not a property)."""
from pathlib import Path

import pytest

from benchmarks import decision_quality, paper_figure

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_rows(path):
    """(the provenance beside the CSV as '# key: value' lines, the rows as dicts of strings); the
    CSV itself is plain: its first line is the header."""
    from utils.provenance import read_csv_rows, read_provenance
    assert not Path(path).read_text().startswith("#"), "provenance belongs beside the CSV, not in it"
    return [f"# {k}: {v}" for k, v in read_provenance(path).items()], read_csv_rows(path)


def test_decision_quality_smallest(tmp_path):
    out = tmp_path / "dq.csv"
    decision_quality.main(["--models", "le_net", "--bandwidths", "100", "--repeats", "2", "--rtt", "5",
                           "--edge-slowdown", "2", "--out", str(out)])
    meta, rows = read_rows(out)
    assert any(line.startswith("# commit:") for line in meta)
    assert any(line.startswith("# edge_slowdown: 2") for line in meta)
    assert any(line.startswith("# pinning:") for line in meta)
    assert any(line.startswith("# predictors: cloud: its own profile") for line in meta)
    assert any(line.startswith("# chosen_pred_error_median_pct:") for line in meta)
    assert len(rows) == 1
    row = rows[0]
    assert set(decision_quality.COLUMNS) <= set(row)
    assert (row["model"], row["bandwidth"], float(row["bandwidth_mbps"])) == ("le_net", "100", 100.0)
    assert float(row["rtt_ms"]) == 5.0 and int(row["rounds"]) == 2
    n = int(row["units"])
    chosen, oracle = int(row["chosen_cut"]), int(row["oracle_cut"])
    assert 0 <= chosen <= n and 0 <= oracle <= n
    measured = {int(k) for k in row["measured_cuts"].split(";")}
    assert {0, n, chosen, oracle} <= measured <= set(range(n + 1))
    assert len(measured) + int(row["skipped"]) == n + 1
    for key in ("chosen_ms", "oracle_ms", "ratio", "edge_only_ms", "cloud_only_ms", "speedup_vs_edge",
                "speedup_vs_cloud", "vs_best_endpoint", "predicted_chosen_ms"):
        assert float(row[key]) > 0
    # the oracle and the ratio come from the same measurements: the oracle's median is the least
    assert float(row["ratio"]) >= 1.0 and float(row["oracle_ms"]) <= float(row["chosen_ms"])
    assert float(row["ratio_min"]) <= float(row["ratio_p25"]) <= float(row["ratio_p75"]) <= float(row["ratio_max"])
    assert (row["chosen_is_oracle"] == "True") == (chosen == oracle)
    best = min(float(row["edge_only_ms"]), float(row["cloud_only_ms"]))
    assert abs(float(row["vs_best_endpoint"]) - best / float(row["chosen_ms"])) < 0.01
    assert row["best_endpoint"] in ("edge-only", "cloud-only")

    _, cuts = read_rows(tmp_path / "dq_cuts.csv")
    assert set(decision_quality.CUT_COLUMNS) <= set(cuts[0])
    assert len(cuts) == n + 1 and [int(c["cut"]) for c in cuts] == list(range(n + 1))
    assert {int(c["cut"]) for c in cuts if c["phase"] == "measured"} == measured
    assert all(int(c["runs"]) == 2 for c in cuts if c["phase"] == "measured")  # every kept cut alike
    by_cut = {int(c["cut"]): c for c in cuts}
    assert float(by_cut[oracle]["total_ms"]) == min(float(c["total_ms"]) for c in cuts if c["phase"] == "measured")
    assert all(float(c["rtt_ms"]) == 5.0 for c in cuts)


def test_rtt_typical_is_for_the_presets_only():
    from benchmarks.measure import rtt_for
    assert (rtt_for("typical", "3g"), rtt_for("typical", "LTE"), rtt_for("typical", "wifi")) == (300.0, 70.0, 28.0)
    assert rtt_for("12.5", "100") == 12.5
    import pytest
    with pytest.raises(ValueError):
        rtt_for("typical", "100")
    with pytest.raises(SystemExit):
        decision_quality.main(["--bandwidths", "100", "--rtt", "typical"])


def test_paper_figure_from_synthetic_csv(tmp_path):
    src = tmp_path / "dq.csv"
    header = "model,bandwidth,bandwidth_mbps,units,chosen_cut,edge_only_ms,cloud_only_ms,chosen_search_ms," \
             "speedup_vs_edge,speedup_vs_cloud\n"
    src.write_text("# edge_slowdown: 10.0\n" + header +
                   "alex_net,3g,1.1,22,22,300,4400,300,1.0,14.67\n"
                   "alex_net,wifi,18.88,22,3,300,290,150,2.0,1.93\n"
                   "vgg_net,lte,5.85,53,0,3400,1200,1200,2.83,1.0\n"
                   "le_net,wifi,18.88,13,9,45,260,44,1.02,5.9\n")  # not in the figure: ignored
    out = tmp_path / "figure.png"
    assert paper_figure.main(["--csv", str(src), "--out", str(out)]) == out
    data = out.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 1000
    assert len(paper_figure.figure_groups(paper_figure.read_results(src)[1])) == 3
