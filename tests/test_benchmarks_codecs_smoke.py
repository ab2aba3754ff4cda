"""The codecs benchmark runs end to end on its smallest setting. Structure only: no timing
assertion (which plan wins is a measurement, not a property)."""
import pytest

from benchmarks import codecs
from net.wire.codecs import EXACT
from utils.provenance import read_csv_rows, read_provenance


@pytest.mark.slow
def test_codecs_benchmark_smallest(tmp_path):
    out = tmp_path / "codecs.csv"
    codecs.main(["--models", "le_net", "--bandwidths", "1000", "--repeats", "1", "--edge-slowdown", "2",
                 "--out", str(out)])
    rows = read_csv_rows(out)
    assert [r["variant"] for r in rows] == list(codecs.VARIANTS)
    by = {r["variant"]: r for r in rows}
    assert by["chosen"]["codec"] in EXACT and by["chosen"]["lossy"] == "False"
    assert (by["jpeg90"]["cut"], by["jpeg90"]["codec"], by["jpeg90"]["lossy"]) == ("0", "jpeg90", "True")
    assert (by["cloud_only"]["cut"], by["cloud_only"]["codec"]) == ("0", "none")
    assert by["edge_only"]["cut"] == "13" and by["edge_only"]["transfer_bytes"] == "0"
    summary = read_csv_rows(tmp_path / "codecs_summary.csv")
    assert len(summary) == 1 and set(codecs.SUMMARY_COLUMNS) <= set(summary[0])
    sizes = read_csv_rows(tmp_path / "codecs_bytes.csv")
    assert [int(r["cut"]) for r in sizes] == list(range(13))
    assert int(sizes[0]["pixels"]) == 3 * 224 * 224 and sizes[1]["pixels"] == ""
    assert "decision_time_us" in read_provenance(out)
