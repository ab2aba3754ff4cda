"""Multi-task mode: task draws, traces, the background bandwidth tracker, the task runner."""
import re
import subprocess
import sys
import time

import pytest
import torch
from apscheduler.schedulers.background import BackgroundScheduler

from models import MODEL_NAMES
from net.cloud.monitor import MonitorServer
from net.cloud.server import CloudServer
from net.edge.client import CloudClient
from net.edge.tasks import BandwidthTracker, TaskRunner, draw_tasks, percentile, replay_trace, summarize
from net.emulation.link import LinkPacer
from net.emulation.trace import TraceError, TracePoint, load_trace, rate_at
from predictor import LatencyPredictor
from utils.classes import top_k
from utils.provenance import REPO_ROOT


@pytest.fixture
def scheduler():
    s = BackgroundScheduler()
    s.start()
    yield s
    s.shutdown(wait=True)


def test_draw_is_reproducible_and_covers_the_models():
    assert draw_tasks(40, seed=3) == draw_tasks(40, seed=3)
    assert draw_tasks(40, seed=3) != draw_tasks(40, seed=4)
    assert set(draw_tasks(200, seed=0)) == set(MODEL_NAMES)


def test_shipped_traces_load():
    step = load_trace(REPO_ROOT / "traces" / "wifi_3g_step.csv")
    assert [p.bandwidth_mbps for p in step] == [18.88, 1.1, 18.88]
    assert rate_at(step, 25) == 1.1 and rate_at(step, 100) == 18.88
    walk = load_trace(REPO_ROOT / "traces" / "lte_walk.csv")
    assert len(walk) == 90 and all(0.5 <= p.bandwidth_mbps <= 20 for p in walk)


@pytest.mark.parametrize("text, message", [
    ("time_s,bandwidth_mbps\n1,5\n", "starts at time_s = 0"),
    ("time_s,bandwidth_mbps\n0,5\n0,6\n", "increase"),
    ("time_s,bandwidth_mbps\n0,-5\n", "> 0"),
    ("t,b\n0,5\n", "columns"),
    ("time_s,bandwidth_mbps\n0,fast\n", "not two numbers"),
])
def test_bad_traces_are_refused_clearly(tmp_path, text, message):
    path = tmp_path / "trace.csv"
    path.write_text(text)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_trace_replay_changes_the_emulated_link(scheduler):
    pacer = LinkPacer(1.0)
    replay_trace(scheduler, pacer, [TracePoint(0, 50.0), TracePoint(0.3, 2.0)], time.time())
    assert pacer.rate_mbps == 50.0
    time.sleep(0.8)
    assert pacer.rate_mbps == 2.0


def test_tracker_measures_the_paced_link_and_falls_back_to_the_cloud_port(scheduler, cloud_server):
    pacer = LinkPacer(20.0)
    with MonitorServer("127.0.0.1", 0).start() as monitor:
        tracker = BandwidthTracker(scheduler, [monitor.address, cloud_server.address], pacer, 0.0, 60)
        assert 15 <= tracker.latest_mbps <= 22
        tracker.close()
    closed = ("127.0.0.1", monitor.address[1])  # nothing listens there any more
    tracker = BandwidthTracker(scheduler, [closed, cloud_server.address], pacer, 0.0, 60)
    assert 15 <= tracker.latest_mbps <= 22  # measured on the cloud's main port instead
    tracker.close()


def make_runner(address, x):
    edge, cloud = LatencyPredictor.load("edge"), LatencyPredictor.load("cloud")
    return TaskRunner(CloudClient(*address), edge, cloud, x)


@pytest.mark.slow
def test_runner_keeps_one_row_per_task_through_a_cloud_restart(image_batch, chain_models):
    with torch.no_grad():
        expected = {n: top_k(chain_models[n](image_batch.clone()))[0][0] for n in ("le_net", "alex_net")}
    fast = 1e5  # Mbit/s: so fast that every task goes to the cloud
    server = CloudServer("127.0.0.1", 0).start()
    address = server.address
    runner = make_runner(address, image_batch)
    started = time.monotonic()
    rows = [runner.run_task(1, "le_net", fast, started), runner.run_task(2, "alex_net", fast, started)]
    server.stop()  # the cloud goes away: tasks fall back, none is dropped
    rows.append(runner.run_task(3, "le_net", fast, started))
    server = CloudServer(*address).start()  # back on the same port: the connection is re-opened
    try:
        rows.append(runner.run_task(4, "le_net", fast, started))
    finally:
        server.stop()
        runner.client.close()
    assert [r["task"] for r in rows] == [1, 2, 3, 4]
    assert [r["fallback"] for r in rows] == [False, False, True, False]
    assert all(r["cut_point"] < r["num_units"] for r in rows)
    assert all(r["top1"] == expected[r["model"]] for r in rows)
    assert rows[2]["fallback_reason"] and rows[3]["transfer_bytes"] > 0


def test_summary_figures():
    rows = [{"model": "le_net", "cut_point": k, "measured_total_ms": m, "predicted_total_ms": p,
             "predicted_edge_only_ms": 40.0, "predicted_cloud_only_ms": 20.0, "fallback": f}
            for k, m, p, f in [(0, 10.0, 12.0, False), (13, 30.0, 27.0, True), (0, 20.0, 20.0, False)]]
    (s,) = summarize(rows)
    assert (s["tasks"], s["cuts"], s["fallbacks"]) == (3, "0,13", 1)
    assert s["mean_ms"] == 20.0 and s["p50_ms"] == 20.0 and s["p95_ms"] == 30.0
    assert s["mae_ms"] == pytest.approx(5 / 3)
    # like with like: predicted (mean 59/3 ms) against predicted edge-only and cloud-only
    assert s["speedup_vs_edge_only"] == pytest.approx(40 / (59 / 3))
    assert s["speedup_vs_cloud_only"] == pytest.approx(20 / (59 / 3))


def test_summary_of_a_model_run_all_on_the_edge_shows_no_speed_up_and_nothing_saved():
    """Measured runs against predictions made an all-edge model look 19% better than itself."""
    rows = [{"model": "vgg_net", "cut_point": 53, "measured_total_ms": 300.0, "predicted_total_ms": 360.0,
             "predicted_edge_only_ms": 360.0, "predicted_cloud_only_ms": 900.0, "fallback": False,
             "energy_mj_from_measured_times": 160.0, "predicted_energy_mj": 200.0,
             "predicted_edge_only_energy_mj": 200.0} for _ in range(3)]
    (s,) = summarize(rows)
    assert s["speedup_vs_edge_only"] == 1.0 and s["energy_saved_vs_edge_only_pct"] == 0.0


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 100)) == (50, 95, 100)
    assert percentile([7.0], 95) == 7.0


@pytest.mark.slow
def test_tasks_run_to_the_end_with_reports_and_the_cut_follows_a_trace(tmp_path):
    """The scripts as a user runs them: tasks_cloud_api.py in a child process (--local-cloud),
    a trace that drops from 1000 to 5 Mbit/s after 0.3 s, reports written."""
    trace = tmp_path / "drop.csv"
    trace.write_text("time_s,bandwidth_mbps\n0,1000\n0.3,5\n")
    report = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, "tasks_edge_api.py", "-d", "cpu", "--local-cloud", "--tasks", ",".join(["le_net"] * 100),
         "--bandwidth-trace", str(trace), "--interval", "0.3", "--edge-slowdown", "10",
         "--report", str(report)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("100 tasks: le_net, le_net")
    cuts = [int(c) for c in re.findall(r"cut +(\d+)/13", out.stdout)]
    assert len(cuts) == 100
    # all on the cloud on the fast link; once the monitor has seen the drop, past the pooling
    # layers that shrink the tensor (unit 7) or all on the edge
    assert cuts[0] == 0 and cuts[-1] >= 7
    assert re.search(r"^le_net +100 +0,", out.stdout, re.M)  # the summary row
    for ext in (".xls", ".csv", ".png"):
        assert (tmp_path / f"run{ext}").stat().st_size > 1000
    from utils.excel_utils import read_column
    assert read_column(tmp_path / "run.xls", "task") == list(range(1, 101))


def test_trace_errors_name_the_line_of_the_file(tmp_path):
    path = tmp_path / "trace.csv"
    path.write_text("# a comment\n# another\ntime_s,bandwidth_mbps\n0,5\n1,fast\n")
    with pytest.raises(TraceError, match="line 5 is not two numbers"):
        load_trace(path)
