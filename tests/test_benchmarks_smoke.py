"""The throughput benchmarks run end to end on their smallest setting (no timing assertions)."""
from pathlib import Path

import pytest

from benchmarks import cloud_concurrency, protocol_throughput

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each


def read_rows(path):
    """(the provenance beside the CSV as '# key: value' lines, the rows as dicts of strings); the
    CSV itself is plain: its first line is the header."""
    from utils.provenance import read_csv_rows, read_provenance
    assert not Path(path).read_text().startswith("#"), "provenance belongs beside the CSV, not in it"
    return [f"# {k}: {v}" for k, v in read_provenance(path).items()], read_csv_rows(path)


def test_protocol_throughput_smallest(tmp_path):
    out = tmp_path / "protocol_throughput.csv"
    protocol_throughput.main(["--sizes", "10KB", "--repeats", "2", "--out", str(out)])
    meta, rows = read_rows(out)
    assert any(line.startswith("# commit:") for line in meta)
    assert len(rows) == 1
    assert set(rows[0]) >= {"size_bytes", "frames_ms", "raw_ms", "torch_ms", "frames_MBps", "raw_MBps",
                            "torch_MBps", "frames_vs_raw", "errors"}
    assert rows[0]["size_bytes"] == "10000" and rows[0]["errors"] == "0"
    assert float(rows[0]["frames_MBps"]) > 0 and float(rows[0]["raw_MBps"]) > 0


def test_protocol_throughput_runs_give_medians_and_ranges(tmp_path):
    out = tmp_path / "pt.csv"
    protocol_throughput.main(["--sizes", "10KB", "--repeats", "1", "--runs", "3", "--out", str(out)])
    meta, rows = read_rows(out)
    assert any(line == "# runs: 3" for line in meta)
    (row,) = rows
    assert row["runs"] == "3"
    assert float(row["frames_vs_raw_min"]) <= float(row["frames_vs_raw"]) <= float(row["frames_vs_raw_max"])
    _, per_run = read_rows(tmp_path / "pt_runs.csv")
    assert [r["run"] for r in per_run] == ["1", "2", "3"]
    assert sorted(float(r["frames_vs_raw"]) for r in per_run)[1] == float(row["frames_vs_raw"])


def test_cloud_concurrency_smallest(tmp_path):
    out = tmp_path / "cloud_concurrency.csv"
    cloud_concurrency.main(["--model", "le_net", "--clients", "1", "2", "--requests", "3", "--runs", "2",
                            "--out", str(out)])
    meta, rows = read_rows(out)
    assert any(line.startswith("# cloud_threads:") for line in meta)
    assert [r["clients"] for r in rows] == ["1", "2"]
    _, per_run = read_rows(tmp_path / "cloud_concurrency_runs.csv")
    assert [(r["run"], r["clients"]) for r in per_run] == [("1", "1"), ("1", "2"), ("2", "1"), ("2", "2")]
    for r in rows:
        assert set(r) >= {"model", "cut", "clients", "requests", "runs", "throughput_rps", "p50_ms", "p99_ms",
                          "throughput_rps_min", "throughput_rps_max", "errors", "wrong"}
        assert r["errors"] == "0" and r["wrong"] == "0" and r["runs"] == "2"
        assert r["completed"] == r["requests"] == str(3 * int(r["clients"]))
        mine = sorted(float(x["throughput_rps"]) for x in per_run if x["clients"] == r["clients"])
        assert float(r["throughput_rps_min"]) == mine[0] and float(r["throughput_rps_max"]) == mine[-1]
        assert float(r["throughput_rps"]) == round((mine[0] + mine[1]) / 2, 2)  # the median of two


def test_idle_penalty_smallest(tmp_path):
    from benchmarks import idle_penalty
    out = tmp_path / "idle.csv"
    idle_penalty.main(["--models", "le_net", "--gaps", "0", "0.05", "--repeats", "1", "--out", str(out)])
    meta, rows = read_rows(out)
    assert [r["gap_s"] for r in rows] == ["0.0", "0.05"]
    assert all(float(r["warm_ms"]) > 0 and float(r["cold_ms"]) > 0 and r["repeats"] == "1" for r in rows)
    row = rows[1]
    assert abs(float(row["cold_over_warm"]) - float(row["cold_ms"]) / float(row["warm_ms"])) < 0.02  # rounded inputs
