"""The load-aware throughput benchmark runs end to end on a tiny setting: a real cloud process,
a few concurrent edges, one round of each arm. Structure and correctness only (every answer equal
to local inference, the rows and columns written); no timing assertion."""

import pytest
import torch

from benchmarks import load_aware_throughput as bench
from tests.test_benchmarks_quality_smoke import read_rows

pytestmark = pytest.mark.slow  # real processes or benchmark runs: seconds each


def test_load_aware_throughput_tiny(tmp_path):
    out, requests_out = tmp_path / "load.csv", tmp_path / "load_requests.csv"
    affinity, threads = bench.os.sched_getaffinity(0), torch.get_num_threads()
    bench.main(["--model", "le_net", "--edges", "3", "--rounds", "1", "--duration-s", "1.5", "--warmup-s", "0.5",
                "--bandwidth", "1000", "--edge-slowdown", "3", "--settle-load", "5",
                "--out", str(out), "--requests-out", str(requests_out)])
    # the process is left as it was found: its cores, its torch threads
    assert bench.os.sched_getaffinity(0) == affinity and torch.get_num_threads() == threads

    meta, rows = read_rows(out)
    for key in ("commit", "edge_slowdown: 3.0", "edge_clock: cpu", "pinning", "ratio_median", "mismatches_total: 0"):
        assert any(line.startswith(f"# {key}") for line in meta), key
    assert [(r["round"], r["arm"]) for r in rows] == [("1", "blind"), ("1", "aware")]
    n = 13  # le_net's units
    blind, aware = rows
    for row in rows:
        assert set(bench.COLUMNS) <= set(row)
        assert (row["model"], row["edges"], row["mismatches"], row["fallbacks"], row["errors"]) == \
               ("le_net", "3", "0", "0", "0")
        assert int(row["completed"]) > 0 and float(row["throughput_rps"]) > 0
        cuts = {int(k): int(c) for k, c in (item.split(":") for item in row["cuts"].split(";"))}
        assert sum(cuts.values()) == int(row["completed"]) and set(cuts) <= set(range(n + 1))
        assert int(row["cloud_served"]) == sum(c for k, c in cuts.items() if k < n)
        assert float(row["load_min"]) >= 1.0
    # load-blind: always the idle-cloud cut, one that uses the cloud
    assert int(blind["blind_cut"]) < n and blind["cuts"] == f"{blind['blind_cut']}:{blind['completed']}"
    assert float(aware["ratio_vs_blind"]) > 0 and blind["ratio_vs_blind"] == ""
    # where the load-aware cut moves, starting from the load-blind cut at load 1
    by_load = next(line for line in meta if line.startswith("# cut_by_cloud_load: "))
    assert by_load.startswith(f"# cut_by_cloud_load: {blind['blind_cut']} from 1")

    _, requests = read_rows(requests_out)
    assert {r["arm"] for r in requests} == {"blind", "aware"}
    assert len(requests) >= int(blind["completed"]) + int(aware["completed"])
    assert all(r["equal"] == "True" and r["fallback"] == "False" for r in requests)


def test_cuts_by_cloud_load_moves_work_home_as_the_load_grows():
    work = bench.Workload("alex_net", 16.0)
    steps = [step.split(" from ") for step in bench.cuts_by_cloud_load(work.planner, 18.88, 0.0).split(", ")]
    cuts, loads = [int(c) for c, _ in steps], [float(load) for _, load in steps]
    assert loads[0] == 1 and loads == sorted(loads) and cuts == sorted(cuts) and len(cuts) > 1
